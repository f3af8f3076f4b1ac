"""End-to-end: a checkpoint ensemble declared in the config is predicted, decoded and evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.conftest import TINY_DATASETS, tiny_config, write_yaml
from tests.workflow.test_snakemake import snakemake

pytestmark = pytest.mark.slow


def affinities(workdir: Path, predictor: str) -> zarr.Array:
    return zarr.open_array(str(workdir / f"results/predictions/{predictor}/tiny_test.zarr/affinities/s0"), mode="r")


def test_an_ensemble_averages_its_members_and_is_evaluated(tmp_path):
    config = tiny_config(write_yaml(tmp_path / "datasets.yaml", TINY_DATASETS), max_steps=10)
    models = config["models"]
    models["other"] = dict(models["tiny"], seed=7)  # type: ignore[index]  # same net, other initialisation
    config["ensembles"] = {"both": {"models": ["tiny", "other"]}}
    write_yaml(tmp_path / "config.yaml", config)
    targets = [
        "results/evaluations/both/cc/tiny_test.json",
        "results/predictions/tiny/tiny_test.zarr",
        "results/predictions/other/tiny_test.zarr",
    ]
    snakemake(tmp_path, "--cores", "2", *targets)

    store = zarr.open_group(str(tmp_path / "results/predictions/both/tiny_test.zarr"), mode="r")
    recorded = [Path(c["path"]) for c in store.attrs["checkpoints"]]  # type: ignore[union-attr]
    assert [p.parent.name for p in recorded] == ["tiny", "other"]
    # The ensemble's probabilities are the members' mean; each store rounds to 1/255.
    a, b, both = (affinities(tmp_path, p)[:].astype(np.float64) for p in ("tiny", "other", "both"))
    assert np.abs(a - b).max() > 2  # the members differ enough that a copy of one would fail the bound
    assert np.abs(both - (a + b) / 2).max() <= 1.0
    result = json.loads((tmp_path / "results/evaluations/both/cc/tiny_test.json").read_text())
    assert 0.0 <= result["arand"] <= 1.0
