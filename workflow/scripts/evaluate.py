"""Snakemake script of rule `evaluate`: VOI and adapted Rand error as JSON."""

from pipeline_lib.config import load_config
from pipeline_lib.evaluation import evaluate_segmentation
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = load_config(snakemake.config, check_files=False)
    evaluate_segmentation(
        snakemake.input.segmentation,
        snakemake.input.volume,
        snakemake.output[0],
        settings.evaluate,
    )
