"""Snakemake script of rule `predict`: check every block is done and publish the affinities."""

from pipeline_lib.inference.predict import finish_prediction
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    finish_prediction(snakemake.input.partial)
