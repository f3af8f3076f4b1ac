rule evaluate:
    """VOI split/merge and adapted Rand error of a segmentation against the dataset's labels."""
    input:
        segmentation=segmentation("{model}", "{decoder}", "{dataset}"),
        volume=volume("{dataset}"),
    output:
        "results/evaluations/{model}/{decoder}/{dataset}.json",
    conda:
        "../../envs/cpu.yaml"
    log:
        "logs/evaluate/{model}/{decoder}/{dataset}.log",
    resources:
        **resources("evaluate"),
    script:
        "../scripts/evaluate.py"
