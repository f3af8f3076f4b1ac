"""The GPU throughput script is ready to run and skips cleanly without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures for real on a CUDA machine")
def test_gpu_throughput_skips_without_cuda() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py")], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke mode is for machines without CUDA")
def test_gpu_checks_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    """``gpu_checks.sh --allow-cpu`` runs every step's code at tiny sizes and prints one JSON line per figure."""
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_checks.sh"), str(tmp_path / "out"), "--allow-cpu", "--skip-tests"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_name = {line["name"]: line for line in lines if "rc" not in line}
    assert by_name["env"]["card"] is None and by_name["env"]["cpus"] >= 1
    assert isinstance(by_name["wheels"]["missing"], list)
    for name in ("infer_8x16x16_fp32", "infer_8x16x16_bf16"):
        assert by_name[name]["mvoxel_per_s"] > 0 and by_name[name]["volume"] == [8, 32, 32]
    assert by_name["train_loader"]["steps_per_s"] > 0 and by_name["train_on_device"]["steps_per_s"] > 0
    summaries = [line for line in lines if line["name"] == "gpu_throughput"]
    assert "infer_8x16x16_bf16_over_fp32" in summaries[0] and summaries[1]["train_ratio"] > 0
    assert not [line for line in lines if line.get("rc") and line["name"] != "wheels"]  # no step failed
    assert (tmp_path / "out" / "infer.log").exists()
