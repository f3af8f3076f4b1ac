"""Snakemake script of rule `evaluate`: VOI and adapted Rand error as JSON."""

from pipeline_lib.config import job_settings
from pipeline_lib.evaluation import evaluate_segmentation
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    evaluate_segmentation(
        snakemake.input.segmentation,
        snakemake.input.volume,
        snakemake.output[0],
        settings.evaluate,
    )
