"""Snakemake script of rule `decode_relabel`: write one group of blocks of the segmentation."""

from pathlib import Path

from pipeline_lib.config import load_config
from pipeline_lib.decoding.relabel import relabel_blocks
from pipeline_lib.io.volumes import final_path
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    relabel_blocks(final_path(snakemake.input.partial), snakemake.params.blocks, settings.decode)  # noqa: F821
    Path(snakemake.output[0]).write_text(f"blocks {snakemake.params.blocks}\n")  # noqa: F821
