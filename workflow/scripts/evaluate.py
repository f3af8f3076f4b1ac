"""Snakemake script of rule `evaluate`: VOI and adapted Rand error as JSON."""

from pipeline_lib.config import load_config
from pipeline_lib.evaluation import evaluate_segmentation
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    evaluate_segmentation(
        snakemake.input.segmentation,  # noqa: F821
        snakemake.input.volume,  # noqa: F821
        snakemake.output[0],  # noqa: F821
        settings.evaluate,
    )
