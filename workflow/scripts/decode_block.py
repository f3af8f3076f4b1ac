"""Snakemake script of rule `decode_block`: decode one group of blocks into the shared store."""

from pathlib import Path

from pipeline_lib.config import load_config
from pipeline_lib.decoding import decode_blocks, tuned_decoder
from pipeline_lib.io.volumes import final_path
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    sweep = snakemake.input.sweep[0] if snakemake.input.sweep else None  # noqa: F821
    decoder = tuned_decoder(settings.decoders[snakemake.wildcards.decoder], sweep)  # noqa: F821
    decode_blocks(
        snakemake.input.affinities,  # noqa: F821
        final_path(snakemake.input.partial),  # noqa: F821
        snakemake.params.blocks,  # noqa: F821
        decoder,
        settings.decode,
    )
    Path(snakemake.output[0]).write_text(f"blocks {snakemake.params.blocks}\n")  # noqa: F821
