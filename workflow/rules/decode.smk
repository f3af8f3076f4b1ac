# Blockwise segmentation: prepare (records the block grid), decode the blocks in at most
# decode.max_jobs jobs, stitch the blocks across their faces (one small job: the final id of
# every block-local id), relabel the blocks in as many jobs, then check every block and publish
# the segmentation.


rule decode_prepare:
    input:
        affinities=prediction("{model}", "{dataset}"),
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
    output:
        temp(
            directory("results/segmentations/{model}/{decoder}/{dataset}.zarr.partial")
        ),
    log:
        "logs/decode_prepare/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        decoder=lambda wc: PLAN.config["decoders"][wc.decoder],
        decode=PLAN.config["decode"],
    script:
        "../scripts/decode_prepare.py"


rule decode_block:
    input:
        partial="results/segmentations/{model}/{decoder}/{dataset}.zarr.partial",
        affinities=prediction("{model}", "{dataset}"),
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
    output:
        temp("results/segmentations/{model}/{decoder}/{dataset}.zarr.jobs/{job}.done"),
    log:
        "logs/decode_block/{model}/{decoder}/{dataset}/{job}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: threads("decode")
    resources:
        **resources("decode"),
    params:
        n_jobs=lambda wc: PLAN.decode_jobs(wc.dataset),
    script:
        "../scripts/decode_block.py"


rule decode_stitch:
    input:
        partial="results/segmentations/{model}/{decoder}/{dataset}.zarr.partial",
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
        jobs=lambda wc: expand(
            "results/segmentations/{{model}}/{{decoder}}/{{dataset}}.zarr.jobs/{job}.done",
            job=range(PLAN.decode_jobs(wc.dataset)),
        ),
    output:
        temp("results/segmentations/{model}/{decoder}/{dataset}.zarr.jobs/stitch.done"),
    log:
        "logs/decode_stitch/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **resources("decode"),
    script:
        "../scripts/decode_stitch.py"


rule decode_relabel:
    input:
        partial="results/segmentations/{model}/{decoder}/{dataset}.zarr.partial",
        stitch="results/segmentations/{model}/{decoder}/{dataset}.zarr.jobs/stitch.done",
    output:
        temp(
            "results/segmentations/{model}/{decoder}/{dataset}.zarr.jobs/relabel/{job}.done"
        ),
    log:
        "logs/decode_relabel/{model}/{decoder}/{dataset}/{job}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: threads("decode")
    resources:
        **resources("decode"),
    params:
        n_jobs=lambda wc: PLAN.decode_jobs(wc.dataset),
    script:
        "../scripts/decode_relabel.py"


rule decode:
    """Instance segmentation of a dataset by one decoder, stitched across blocks."""
    input:
        partial="results/segmentations/{model}/{decoder}/{dataset}.zarr.partial",
        jobs=lambda wc: expand(
            "results/segmentations/{{model}}/{{decoder}}/{{dataset}}.zarr.jobs/relabel/{job}.done",
            job=range(PLAN.decode_jobs(wc.dataset)),
        ),
    output:
        directory("results/segmentations/{model}/{decoder}/{dataset}.zarr"),
    log:
        "logs/decode/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/decode_finish.py"
