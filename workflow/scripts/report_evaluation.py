"""Snakemake script of rule `report_evaluation`: the evaluation table (CSV, HTML) and its plot."""

from pipeline_lib.report import write_evaluation_report
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    runs = snakemake.params.runs
    write_evaluation_report(
        [(*run, path) for run, path in zip(runs, snakemake.input, strict=True)],
        csv=snakemake.output.csv,
        html=snakemake.output.html,
        plot=snakemake.output.plot,
    )
