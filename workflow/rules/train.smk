rule train:
    """Train a model on the train datasets (validating on the val datasets); resumes from last.ckpt."""
    input:
        train=lambda wc: [volume(d) for d in PLAN.datasets_with_role("train")],
        val=lambda wc: [volume(d) for d in PLAN.datasets_with_role("val")],
    output:
        checkpoint=model_file("{model}", "best.ckpt"),
        metrics=model_file("{model}", "metrics.csv"),
        loss_plot=report(
            model_file("{model}", "loss.png"),
            caption="../report/loss.rst",
            category="Training",
            labels={"model": "{model}", "figure": "loss curves"},
        ),
    log:
        "logs/train/{model}.log",
    benchmark:
        "logs/train/{model}.benchmark.tsv"
    wildcard_constraints:
        model=one_of(PLAN.settings.models),  # an ensemble trains nothing
    conda:
        "../../envs/gpu.yaml"
    threads: threads("train")
    resources:
        **resources("train"),
    params:
        model=lambda wc: PLAN.config["models"][wc.model],
    script:
        "../scripts/train.py"
