"""Shared fixtures: the repository root and a tiny synthetic dataset declaration."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def torch_one_thread():
    """One torch thread: on a shared 2-core machine oversubscription makes tests ~5x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def repo_root() -> Path:
    return REPO


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line that runs this repository's workflow in ``workdir`` with its ``config.yaml``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        f"--configfile={workdir / 'config.yaml'}",
        *args,
    ]


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# The rules of one dataset's chain, assemble to evaluate: a full run executes each of them
# (tests/workflow locally, tests/slurm as SLURM jobs).
CHAIN_RULES = (
    "assemble",
    "train",
    "predict_prepare",
    "predict_block",
    "predict",
    "decode_prepare",
    "decode_block",
    "decode_stitch",
    "decode_relabel",
    "decode",
    "evaluate",
)

TINY_DATASETS = {
    "datasets": {
        "tiny_train": {
            "synthetic": {"shape": [24, 64, 64], "seed": 1, "cell_size": 14},
            "voxel_size": [8, 8, 8],
            "roles": ["train"],
        },
        "tiny_val": {
            "synthetic": {"shape": [16, 48, 48], "seed": 2, "cell_size": 14},
            "voxel_size": [8, 8, 8],
            "roles": ["val"],
        },
        "tiny_test": {
            "synthetic": {"shape": [24, 64, 64], "seed": 3, "cell_size": 14},
            "voxel_size": [8, 8, 8],
            "roles": ["test"],
        },
    }
}


def tiny_config(datasets_file: Path, max_steps: int = 20) -> dict[str, object]:
    """A run small enough for tests: 4 prediction blocks in 2 jobs, 12 decoding blocks in 3."""
    return {
        "datasets_file": str(datasets_file),
        "datasets": ["tiny_train", "tiny_val", "tiny_test"],
        "models": {
            "tiny": {
                "architecture": "unet",
                "architecture_params": {"channels": [8, 16], "strides": [2], "num_res_units": 1},
                "offsets": [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
                "patch_shape": [16, 32, 32],
                "max_steps": max_steps,
                "val_every_n_steps": 10,
                "val_batches": 1,
            }
        },
        "decoders": {
            "cc": {"method": "connected_components", "threshold": 0.5, "tune_threshold": True, "min_size": 10}
        },
        "assemble": {"chunk_shape": [8, 32, 32]},
        "predict": {"block_shape": [24, 32, 32], "chunk_shape": [8, 32, 32], "max_jobs": 2},
        "decode": {"block_shape": [8, 32, 32], "chunk_shape": [8, 32, 32], "max_jobs": 3},
        "evaluate": {"block_shape": [8, 32, 32]},
    }


@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A working directory with a tiny datasets file and the matching config dict."""
    datasets = write_yaml(tmp_path / "datasets.yaml", TINY_DATASETS)
    return tmp_path, tiny_config(datasets)
