"""The GPU throughput script is ready to run and skips cleanly without CUDA."""

from __future__ import annotations

import json
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
