"""Snakemake script of rule `predict_block`: predict this job's share of the blocks into the shared store."""

from pathlib import Path

import torch

from pipeline_lib.blockstore import BlockStore
from pipeline_lib.config import job_settings
from pipeline_lib.inference.predict import PREDICTED, predict_blocks
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):
    settings = job_settings(snakemake.config)
    torch.set_num_threads(snakemake.threads)
    partial = snakemake.input.partial
    blocks = BlockStore.open(partial, PREDICTED).share(int(snakemake.wildcards.job), snakemake.params.n_jobs)
    predicted = predict_blocks(
        snakemake.input.volume,
        snakemake.input.checkpoints,
        partial,
        blocks,
        settings.predicting_model(snakemake.wildcards.model),
        settings.predict,
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    Path(snakemake.output[0]).write_text(f"blocks {blocks.start}..{blocks.stop - 1}, predicted {len(predicted)}\n")
