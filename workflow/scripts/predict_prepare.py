"""Snakemake script of rule `predict_prepare`: create the empty affinity store for the block jobs."""

from pipeline_lib.config import load_config
from pipeline_lib.inference.predict import prepare_prediction
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    prepare_prediction(
        snakemake.input.volume,  # noqa: F821
        snakemake.input.checkpoints,  # noqa: F821
        snakemake.output[0],  # noqa: F821
        settings.predicting_model(snakemake.wildcards.model),  # noqa: F821
        settings.predict,
    )
