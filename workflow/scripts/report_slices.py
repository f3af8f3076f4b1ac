"""Snakemake script of rule `report_slices`: image, affinities, segmentations, ground truth on slices."""

from pipeline_lib.report import plot_slices
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    wildcards = snakemake.wildcards  # noqa: F821
    plot_slices(
        snakemake.input.volume,  # noqa: F821
        snakemake.input.prediction,  # noqa: F821
        dict(zip(snakemake.params.decoders, snakemake.input.segmentations, strict=True)),  # noqa: F821
        snakemake.output[0],  # noqa: F821
        title=f"model {wildcards.model}, dataset {wildcards.dataset}",
    )
