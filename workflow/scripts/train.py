"""Snakemake script of rule `train`: train (or resume) a model; writes best.ckpt, metrics, curves."""

from pathlib import Path

from pipeline_lib.config import job_settings
from pipeline_lib.training.train import train_model
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    train_model(
        settings.models[snakemake.wildcards.model],
        train_stores=snakemake.input.train,
        val_stores=snakemake.input.val,
        out_dir=Path(snakemake.output.checkpoint).parent,
        threads=snakemake.threads,
    )
