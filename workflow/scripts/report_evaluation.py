"""Snakemake script of rule `report_evaluation`: the evaluation table (CSV, HTML) and its plot."""

from pipeline_lib.report import write_evaluation_report
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    runs = snakemake.params.runs  # noqa: F821
    write_evaluation_report(
        [(*run, path) for run, path in zip(runs, snakemake.input, strict=True)],  # noqa: F821
        csv=snakemake.output.csv,  # noqa: F821
        html=snakemake.output.html,  # noqa: F821
        plot=snakemake.output.plot,  # noqa: F821
    )
