"""Snakemake script of rule `decode`: check every block is relabelled and publish the segmentation."""

from pipeline_lib.config import load_config
from pipeline_lib.decoding.relabel import finish_decoding
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    finish_decoding(snakemake.output[0], settings.decode)  # noqa: F821
