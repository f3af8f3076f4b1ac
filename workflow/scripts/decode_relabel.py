"""Snakemake script of rule `decode_relabel`: write this job's share of the blocks of the segmentation."""

from pathlib import Path

from pipeline_lib.blockstore import BlockStore
from pipeline_lib.decoding.partial_store import RELABELLED_BLOCKS
from pipeline_lib.decoding.relabel import relabel_blocks
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    partial = snakemake.input.partial
    blocks = BlockStore.open(partial, RELABELLED_BLOCKS).share(int(snakemake.wildcards.job), snakemake.params.n_jobs)
    relabelled = relabel_blocks(partial, blocks)
    Path(snakemake.output[0]).write_text(f"blocks {blocks.start}..{blocks.stop - 1}, relabelled {len(relabelled)}\n")
