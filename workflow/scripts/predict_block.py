"""Snakemake script of rule `predict_block`: predict one group of blocks into the shared store."""

from pathlib import Path

import torch

from pipeline_lib.config import load_config
from pipeline_lib.inference.predict import predict_blocks
from pipeline_lib.io.volumes import final_path
from pipeline_lib.workflow import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821  (injected by Snakemake)
    settings = load_config(snakemake.config, check_files=False)  # noqa: F821
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    predict_blocks(
        snakemake.input.volume,  # noqa: F821
        snakemake.input.checkpoints,  # noqa: F821
        final_path(snakemake.input.partial),  # noqa: F821
        snakemake.params.blocks,  # noqa: F821
        settings.predicting_model(snakemake.wildcards.model),  # noqa: F821
        settings.predict,
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    Path(snakemake.output[0]).write_text(f"blocks {snakemake.params.blocks}\n")  # noqa: F821
