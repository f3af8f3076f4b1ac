"""Snakemake script of rule `decode`: check every block is relabelled and publish the segmentation."""

from pipeline_lib.decoding.relabel import finish_decoding
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    finish_decoding(snakemake.input.partial)
