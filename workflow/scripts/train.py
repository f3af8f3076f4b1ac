"""Snakemake script of rule `train`: train (or resume) a model; writes best.ckpt, metrics, curves."""

from pathlib import Path

from pipeline_lib.config import load_config
from pipeline_lib.training.train import train_model
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    train_model(
        settings.models[snakemake.wildcards.model],  # noqa: F821
        train_stores=snakemake.input.train,  # noqa: F821
        val_stores=snakemake.input.val,  # noqa: F821
        out_dir=Path(snakemake.output.checkpoint).parent,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
