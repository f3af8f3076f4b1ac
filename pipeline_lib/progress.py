"""A progress bar for long loops (over blocks, windows, files), written to stderr.

Snakemake sends each job's stderr to its log file, so progress shows up there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate ``items`` with a progress bar (refreshed at most every 2 s, so logs stay short)."""
    yield from tqdm(items, total=total, desc=desc, mininterval=2.0, dynamic_ncols=True)
