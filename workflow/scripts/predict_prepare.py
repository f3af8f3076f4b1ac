"""Snakemake script of rule `predict_prepare`: create the empty affinity store for the block jobs."""

from pipeline_lib.config import job_settings
from pipeline_lib.inference.predict import prepare_prediction
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    prepare_prediction(
        snakemake.input.volume,
        snakemake.input.checkpoints,
        snakemake.output[0],
        settings.predicting_model(snakemake.wildcards.model),
        settings.predict,
    )
