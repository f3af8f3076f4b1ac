"""Snakemake script of rule `sweep`: one decoder over a list of thresholds on a validation dataset."""

from pipeline_lib.config import job_settings
from pipeline_lib.decoding import sweep
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    sweep(
        snakemake.input.affinities,
        snakemake.input.volume,
        settings.decoders[snakemake.wildcards.decoder],
        settings.evaluate.sweep_thresholds[settings.decoders[snakemake.wildcards.decoder].method],
        snakemake.output.table,
        snakemake.output.plot,
        criterion=settings.evaluate.sweep_criterion,
        tolerance=settings.evaluate.sweep_tolerance,
        out_json=snakemake.output.best,
    )
