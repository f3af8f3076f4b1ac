"""Snakemake script of rule `decode_block`: decode this job's share of the blocks into the shared store."""

from pathlib import Path

from pipeline_lib.blockstore import BlockStore
from pipeline_lib.config import job_settings
from pipeline_lib.decoding import decode_blocks, tuned_decoder
from pipeline_lib.decoding.partial_store import DECODED
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    sweep = snakemake.input.sweep[0] if snakemake.input.sweep else None
    decoder = tuned_decoder(settings.decoders[snakemake.wildcards.decoder], sweep)
    partial = snakemake.input.partial
    blocks = BlockStore.open(partial, DECODED).share(int(snakemake.wildcards.job), snakemake.params.n_jobs)
    decode_blocks(snakemake.input.affinities, partial, blocks, decoder, snakemake.input.volume)
    Path(snakemake.output[0]).write_text(f"blocks {blocks.start}..{blocks.stop - 1}\n")
