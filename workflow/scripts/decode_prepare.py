"""Snakemake script of rule `decode_prepare`: create the empty segmentation store."""

from pipeline_lib.config import load_config
from pipeline_lib.decoding import prepare_decoding
from pipeline_lib.io.volumes import final_path
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    prepare_decoding(
        snakemake.input[0],  # noqa: F821
        final_path(snakemake.output[0]),  # noqa: F821
        settings.decoders[snakemake.wildcards.decoder],  # noqa: F821
        settings.decode,
    )
