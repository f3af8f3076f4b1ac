rule assemble:
    """A declared dataset (any source format) as one chunked OME-Zarr volume."""
    input:
        lambda wc: PLAN.source_files(wc.dataset),
    output:
        directory(volume("{dataset}")),
    log:
        "logs/assemble/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: threads("assemble")
    resources:
        **resources("assemble"),
    params:
        dataset=lambda wc: PLAN.raw_dataset(wc.dataset),
    script:
        "../scripts/assemble.py"
