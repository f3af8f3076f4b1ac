"""Quality gates, run with the test suite so CI enforces them: lint, format, types, module size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MAX_MODULE_LINES = 600


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["lint", "format"]
)
def test_ruff(command):
    result = run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefiles_are_formatted():
    snakefmt = Path(sys.executable).parent / "snakefmt"  # installed beside this Python
    command = [str(snakefmt), "--check", "Snakefile", "workflow/rules"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_on_the_library():
    result = run("mypy", "pipeline_lib")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_is_a_dumping_ground():
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for p in (REPO / "pipeline_lib").rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}
