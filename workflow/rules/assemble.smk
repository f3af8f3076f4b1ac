rule assemble:
    """A declared dataset (any source format) as one chunked OME-Zarr volume."""
    input:
        lambda wc: PLAN.source_files(wc.dataset),
    output:
        directory("results/volumes/{dataset}.zarr"),
    params:
        dataset=lambda wc: PLAN.raw_dataset(wc.dataset),
    conda:
        "../../envs/cpu.yaml"
    log:
        "logs/assemble/{dataset}.log",
    threads: threads("assemble")
    resources:
        **resources("assemble"),
    script:
        "../scripts/assemble.py"
