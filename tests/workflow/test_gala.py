"""The real-data configuration (config/gala.yaml) end to end, reduced to a few training steps,
so that it cannot rot. Skipped where the gala crops are absent (a user's clone)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, write_yaml

pytestmark = [pytest.mark.gala, pytest.mark.slow]

GALA = REPO.parent / "shared/data/gala"


@pytest.mark.skipif(not (GALA / "train-image.h5").exists(), reason=f"gala crops not found at {GALA}")
def test_gala_configuration_runs_end_to_end(tmp_path):
    config = yaml.safe_load((REPO / "config/gala.yaml").read_text())
    config["datasets_file"] = str(REPO / "config/datasets.yaml")
    model = config["models"]["gala"]
    model.update(max_steps=4, val_every_n_steps=2, val_batches=1, max_minutes=0)
    model["architecture_params"]["channels"] = [8, 16, 32, 64]
    write_yaml(tmp_path / "config.yaml", config)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           f"--configfile={tmp_path / 'config.yaml'}", "--cores", "2"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for decoder in config["decoders"]:
        scores = json.loads((tmp_path / f"results/evaluations/gala/{decoder}/gala_test.json").read_text())
        assert 0.0 <= scores["arand"] <= 1.0
        assert scores["n_gt_objects"] == 132  # the test crop's non-zero labels, read through HDF5 + LZF
        (sweep,) = (tmp_path / f"results/sweeps/gala/{decoder}").glob("*.json")  # on the held-out part
        best = json.loads(sweep.read_text())
        assert best["threshold"] in best["thresholds"]
