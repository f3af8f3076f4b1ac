"""Snakemake script of rule `decode_stitch`: join blocks across faces, write the final id table."""

from pathlib import Path

from pipeline_lib.config import load_config
from pipeline_lib.decoding import tuned_decoder
from pipeline_lib.decoding.relabel import stitch_blocks
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    sweep = snakemake.input.sweep[0] if snakemake.input.sweep else None  # noqa: F821
    decoder = tuned_decoder(settings.decoders[snakemake.wildcards.decoder], sweep)  # noqa: F821
    n_objects = stitch_blocks(snakemake.input.partial, decoder)  # noqa: F821
    Path(snakemake.output[0]).write_text(f"objects {n_objects}\n")  # noqa: F821
