"""Snakemake script of rule `report_slices`: image, affinities, segmentations, ground truth on slices."""

from pipeline_lib.report import plot_slices
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    wildcards = snakemake.wildcards
    plot_slices(
        snakemake.input.volume,
        snakemake.input.prediction,
        dict(zip(snakemake.params.decoders, snakemake.input.segmentations, strict=True)),
        snakemake.output[0],
        title=f"model {wildcards.model}, dataset {wildcards.dataset}",
    )
