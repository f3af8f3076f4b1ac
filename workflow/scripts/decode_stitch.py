"""Snakemake script of rule `decode_stitch`: join blocks across faces, write the final id table."""

from pathlib import Path

from pipeline_lib.config import job_settings
from pipeline_lib.decoding import tuned_decoder
from pipeline_lib.decoding.relabel import stitch_blocks
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    sweep = snakemake.input.sweep[0] if snakemake.input.sweep else None
    decoder = tuned_decoder(settings.decoders[snakemake.wildcards.decoder], sweep)
    n_objects = stitch_blocks(snakemake.input.partial, decoder)
    Path(snakemake.output[0]).write_text(f"objects {n_objects}\n")
