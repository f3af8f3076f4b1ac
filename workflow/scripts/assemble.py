"""Snakemake script of rule `assemble`: a declared dataset → results/volumes/{dataset}.zarr."""

from pipeline_lib.config import job_settings
from pipeline_lib.data.assemble import assemble_dataset
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    assemble_dataset(
        settings.datasets[snakemake.wildcards.dataset],
        snakemake.output[0],
        settings.assemble.chunk_shape,
    )
