"""Snakemake script of rule `decode_prepare`: create the empty segmentation store."""

from pipeline_lib.config import job_settings
from pipeline_lib.decoding import prepare_decoding, tuned_decoder
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    sweep = snakemake.input.sweep[0] if snakemake.input.sweep else None
    decoder = tuned_decoder(settings.decoders[snakemake.wildcards.decoder], sweep)
    prepare_decoding(
        snakemake.input.affinities,
        snakemake.output[0],
        decoder,
        settings.decode,
        snakemake.input.volume,
    )
