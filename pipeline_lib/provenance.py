"""What produced an output: pipeline version, git commit, settings and inputs.

Every zarr or JSON output stores :func:`provenance` under the ``provenance`` key of its
attributes; ``python -m pipeline_lib info <output>`` prints it back.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pipeline_lib


@cache
def git_commit() -> str:
    """The commit of the pipeline's checkout (with ``-dirty`` if modified), or ``unknown``."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def plain_data(value: Any) -> Any:
    """Dataclasses, mappings and sequences as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain_data(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def provenance(stage: str, settings: Mapping[str, Any], inputs: Sequence[str | Path]) -> dict[str, Any]:
    """A JSON-serialisable record of how a stage's output was made."""
    return {
        "stage": stage,
        "pipeline_version": pipeline_lib.__version__,
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": plain_data(settings),
        "inputs": [str(Path(p).resolve()) for p in inputs],
    }
