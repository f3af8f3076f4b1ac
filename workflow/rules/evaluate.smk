rule evaluate:
    """VOI split/merge and adapted Rand error of a segmentation against the dataset's labels."""
    input:
        segmentation=segmentation("{model}", "{decoder}", "{dataset}"),
        volume=volume("{dataset}"),
    output:
        evaluation("{model}", "{decoder}", "{dataset}"),
    log:
        "logs/evaluate/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **resources("evaluate"),
    script:
        "../scripts/evaluate.py"


rule sweep:
    """One decoder over a list of thresholds on a validation dataset: table, plot, best threshold."""
    input:
        affinities=prediction("{model}", "{dataset}"),
        volume=volume("{dataset}"),
    output:
        table=sweep("{model}", "{decoder}", "{dataset}", "csv"),
        plot=report(
            sweep("{model}", "{decoder}", "{dataset}", "png"),
            caption="../report/sweep.rst",
            category="Decoder sweeps",
            labels={
                "model": "{model}",
                "decoder": "{decoder}",
                "dataset": "{dataset}",
            },
        ),
        best=sweep("{model}", "{decoder}", "{dataset}", "json"),
    log:
        "logs/sweep/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **resources("evaluate"),
    params:
        decoder=lambda wc: PLAN.config["decoders"][wc.decoder],
        evaluate=PLAN.config["evaluate"],
    script:
        "../scripts/sweep.py"
