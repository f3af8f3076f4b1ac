# Blockwise prediction: prepare an empty store (it records the block grid), share the blocks
# out among at most predict.max_jobs jobs (one GPU each on a cluster), then check every block
# and publish the store. The {model}
# wildcard names a predictor: a model (its best checkpoint) or an ensemble (its members'
# best checkpoints, averaged).


rule predict_prepare:
    input:
        volume=volume("{dataset}"),
        checkpoints=lambda wc: PLAN.checkpoints(wc.model),
    output:
        temp(directory("results/predictions/{model}/{dataset}.zarr.partial")),
    log:
        "logs/predict_prepare/{model}/{dataset}.log",
    conda:
        "../../envs/gpu.yaml"
    params:
        model=lambda wc: PLAN.predictor_config(wc.model),
        predict=PLAN.config["predict"],
    script:
        "../scripts/predict_prepare.py"


rule predict_block:
    input:
        partial="results/predictions/{model}/{dataset}.zarr.partial",
        volume=volume("{dataset}"),
        checkpoints=lambda wc: PLAN.checkpoints(wc.model),
    output:
        temp("results/predictions/{model}/{dataset}.zarr.jobs/{job}.done"),
    log:
        "logs/predict_block/{model}/{dataset}/{job}.log",
    conda:
        "../../envs/gpu.yaml"
    threads: threads("predict")
    resources:
        **resources("predict"),
    params:
        n_jobs=lambda wc: PLAN.predict_jobs(wc.dataset),
    script:
        "../scripts/predict_block.py"


rule predict:
    """Affinities of a dataset under a model, once every block job has finished."""
    input:
        partial="results/predictions/{model}/{dataset}.zarr.partial",
        jobs=lambda wc: expand(
            "results/predictions/{{model}}/{{dataset}}.zarr.jobs/{job}.done",
            job=range(PLAN.predict_jobs(wc.dataset)),
        ),
    output:
        directory("results/predictions/{model}/{dataset}.zarr"),
    log:
        "logs/predict/{model}/{dataset}.log",
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/predict_finish.py"
