"""Snakemake script of rule `report_provenance`: one page with the provenance of every output."""

from pipeline_lib.report import write_provenance_page
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    write_provenance_page(list(snakemake.input), snakemake.output[0])
