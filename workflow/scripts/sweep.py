"""Snakemake script of rule `sweep`: one decoder over a list of thresholds on a validation dataset."""

from pipeline_lib.config import load_config
from pipeline_lib.decoding import sweep
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    sweep(
        snakemake.input.affinities,  # noqa: F821
        snakemake.input.volume,  # noqa: F821
        settings.decoders[snakemake.wildcards.decoder],  # noqa: F821
        settings.evaluate.sweep_thresholds[settings.decoders[snakemake.wildcards.decoder].method],  # noqa: F821
        snakemake.output.table,  # noqa: F821
        snakemake.output.plot,  # noqa: F821
        criterion=settings.evaluate.sweep_criterion,
        out_json=snakemake.output.best,  # noqa: F821
    )
