# Blockwise segmentation: prepare (records the block grid), decode the blocks in at most
# decode.max_jobs jobs, stitch the blocks across their faces (one small job: the final id of
# every block-local id), relabel the blocks in as many jobs, then check every block and publish
# the segmentation.


rule decode_prepare:
    input:
        affinities=prediction("{model}", "{dataset}"),
        volume=volume("{dataset}"),  # its image, for decoders with an image_weight
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
    output:
        temp(directory(partial(segmentation("{model}", "{decoder}", "{dataset}")))),
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
        partial=rules.decode_prepare.output[0],
        affinities=prediction("{model}", "{dataset}"),
        volume=volume("{dataset}"),  # its image, for decoders with an image_weight
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
    output:
        temp(
            block_job_marker(
                segmentation("{model}", "{decoder}", "{dataset}"), "{job}"
            )
        ),
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
        partial=rules.decode_prepare.output[0],
        sweep=lambda wc: PLAN.sweep_inputs(wc.model, wc.decoder),
        jobs=lambda wc: expand(
            rules.decode_block.output[0],
            job=range(PLAN.decode_jobs(wc.dataset)),
            allow_missing=True,
        ),
    output:
        temp(
            block_job_marker(
                segmentation("{model}", "{decoder}", "{dataset}"), "stitch"
            )
        ),
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
        partial=rules.decode_prepare.output[0],
        stitch=rules.decode_stitch.output[0],
    output:
        temp(
            block_job_marker(
                segmentation("{model}", "{decoder}", "{dataset}"), "relabel/{job}"
            )
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
        partial=rules.decode_prepare.output[0],
        jobs=lambda wc: expand(
            rules.decode_relabel.output[0],
            job=range(PLAN.decode_jobs(wc.dataset)),
            allow_missing=True,
        ),
    output:
        directory(segmentation("{model}", "{decoder}", "{dataset}")),
    log:
        "logs/decode/{model}/{decoder}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/decode_finish.py"
