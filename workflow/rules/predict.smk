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
        temp(directory(partial(prediction("{model}", "{dataset}")))),
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
        partial=rules.predict_prepare.output[0],
        volume=volume("{dataset}"),
        checkpoints=lambda wc: PLAN.checkpoints(wc.model),
    output:
        temp(block_job_marker(prediction("{model}", "{dataset}"), "{job}")),
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
        partial=rules.predict_prepare.output[0],
        jobs=lambda wc: expand(
            rules.predict_block.output[0],
            job=range(PLAN.predict_jobs(wc.dataset)),
            allow_missing=True,
        ),
    output:
        directory(prediction("{model}", "{dataset}")),
    log:
        "logs/predict/{model}/{dataset}.log",
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/predict_finish.py"
