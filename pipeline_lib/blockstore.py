"""One block lifecycle for every blockwise stage: a ``<name>.partial`` store, its grid and its markers.

Prediction, decoding and relabelling share these steps (daisy's ``Task`` at Snakemake's scale)::

    prepare   store = BlockStore.create(partial, grid, STEP)      the grid is recorded once, here
    job j     for i in store.share(j, n_jobs):                     n_jobs ≤ max_jobs, fixed by the plan
                  if not store.done(i): compute block i; store.mark(i)     (marker written last)
    finish    store.publish()     every block marked, else RuntimeError naming the missing ones;
                                  then ``complete`` is set and ``<name>.partial`` renamed to ``<name>``

The grid (volume shape, block shape, chunk shape, halo) lives in the store's ``block_grid``
attribute, written by :meth:`BlockStore.create`; every later step reads it back with
:meth:`BlockStore.open`, so no step recomputes it from settings or source headers. A store may
carry several marker sets, one per :class:`Step` (decoding has ``decoded`` records and
``relabelled`` markers over one grid); :meth:`BlockStore.at` switches between them.

Contract: a block's marker exists only after the block's output is fully written, so a
rerun redoes exactly the blocks without one; :meth:`BlockStore.publish` is the only way a
``.partial`` store gets its final name.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline_lib.geometry import BlockGrid, Coord
from pipeline_lib.io.volumes import commit, final_path, set_store_attrs, store_attrs

GRID_ATTR = "block_grid"


@dataclass(frozen=True)
class Step:
    """One marker set of a store: block ``i``'s marker is ``<partial>/<folder>/<i><suffix>``.

    ``verb`` and ``past`` word the error of a missing block ("blocks [3] were not
    predicted; rerun the workflow to predict them").
    """

    folder: str
    suffix: str
    verb: str
    past: str


class BlockSettings(Protocol):
    """Settings of a blockwise stage (``PredictSettings``, ``DecodeSettings``)."""

    @property
    def block_shape(self) -> Sequence[int]: ...

    @property
    def chunk_shape(self) -> Sequence[int]: ...


def stage_grid(shape: Sequence[int], settings: BlockSettings) -> BlockGrid:
    """The chunk-aligned grid a stage with ``settings`` cuts a volume of ``shape`` into (the one
    :meth:`BlockStore.create` records; planning computes it from the same function)."""
    return BlockGrid.aligned(shape, settings.block_shape, settings.chunk_shape)


def job_count(n_blocks: int, max_jobs: int) -> int:
    """How many block jobs a stage of ``n_blocks`` blocks runs: ``max_jobs`` at most, one per block at most."""
    if max_jobs < 1:
        raise ValueError(f"max_jobs must be ≥ 1, got {max_jobs}")
    return max(1, min(n_blocks, max_jobs))


def job_share(n_blocks: int, n_jobs: int, job: int) -> range:
    """Block ids of job ``job`` of ``n_jobs``: consecutive ids, shares differ by at most one block."""
    if not 0 <= job < n_jobs:
        raise IndexError(f"job {job} outside 0..{n_jobs - 1}")
    return range(job * n_blocks // n_jobs, (job + 1) * n_blocks // n_jobs)


def listed(block_ids: Sequence[int], shown: int = 20) -> str:
    """``[a, b, ...]`` of the first ``shown`` ids and how many more there are."""
    more = f" and {len(block_ids) - shown} more" if len(block_ids) > shown else ""
    return f"{list(block_ids[:shown])}{more}"


def grid_record(grid: BlockGrid, chunk_shape: Sequence[int], halo: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``block_grid`` attribute of a store with this grid (JSON types)."""
    return {
        "shape": list(grid.shape),
        "block_shape": list(grid.block_shape),
        "chunk_shape": [int(c) for c in chunk_shape],
        "halo": [int(h) for h in (halo if halo is not None else (0,) * len(grid.shape))],
    }


@dataclass(frozen=True)
class BlockStore:
    """A ``.partial`` store's block grid and one step's markers (module docstring).

    ``halo``: voxels read beyond a block on each side (0 where the stage derives its context
    itself, as prediction does from its window); ``chunk_shape``: the zarr chunk that blocks
    are aligned to.
    """

    partial: Path
    grid: BlockGrid
    chunk_shape: Coord
    halo: Coord
    step: Step

    @classmethod
    def create(
        cls,
        partial: str | Path,
        grid: BlockGrid,
        chunk_shape: Sequence[int],
        step: Step,
        halo: Sequence[int] | None = None,
        steps: Iterable[Step] = (),
    ) -> BlockStore:
        """Record ``grid`` in an existing ``partial`` store and make the folders of ``step`` (and ``steps``)."""
        partial = Path(partial)
        record = grid_record(grid, chunk_shape, halo)
        set_store_attrs(partial, {GRID_ATTR: record})
        store = cls._from_record(partial, record, step)
        for each in (step, *steps):
            (partial / each.folder).mkdir(exist_ok=True)
        return store

    @classmethod
    def open(cls, partial: str | Path, step: Step) -> BlockStore:
        """The store as :meth:`create` recorded it; a store without a recorded grid is a RuntimeError."""
        partial = Path(partial)
        record = store_attrs(partial).get(GRID_ATTR)
        if record is None:
            raise RuntimeError(f"{partial}: no recorded block grid (prepared by an older version); delete it and rerun")
        return cls._from_record(partial, record, step)

    @classmethod
    def _from_record(cls, partial: Path, record: Mapping[str, Any], step: Step) -> BlockStore:
        grid = BlockGrid(tuple(record["shape"]), tuple(record["block_shape"]))
        return cls(partial, grid, tuple(record["chunk_shape"]), tuple(record["halo"]), step)

    def at(self, step: Step) -> BlockStore:
        """The same store and grid with the markers of another step."""
        return dataclasses.replace(self, step=step)

    def __len__(self) -> int:
        return len(self.grid)

    @property
    def final(self) -> Path:
        """The name the store is published under."""
        return final_path(self.partial)

    @property
    def complete(self) -> bool:
        """Whether the store was marked complete (publication may have been interrupted after that)."""
        return bool(store_attrs(self.partial).get("complete"))

    def marker(self, block_id: int) -> Path:
        return self.partial / self.step.folder / f"{block_id}{self.step.suffix}"

    def done(self, block_id: int) -> bool:
        return self.marker(block_id).exists()

    def mark(self, block_id: int, content: bytes | str = b"") -> None:
        """Write block ``block_id``'s marker atomically (call it after the block's output is written)."""
        marker = self.marker(block_id)
        tmp = marker.with_name(f".{marker.name}.tmp")
        data = content.encode() if isinstance(content, str) else content
        tmp.write_bytes(data)
        os.replace(tmp, marker)

    def share(self, job: int, n_jobs: int) -> range:
        """The block ids of job ``job`` of ``n_jobs`` (:func:`job_share`)."""
        return job_share(len(self.grid), n_jobs, job)

    def missing(self) -> list[int]:
        """Ids of the blocks without a marker, in order (one directory listing)."""
        try:
            names = set(os.listdir(self.partial / self.step.folder))
        except FileNotFoundError:
            names = set()
        return [i for i in range(len(self.grid)) if f"{i}{self.step.suffix}" not in names]

    def check(self) -> None:
        """Raise RuntimeError naming the blocks without a marker, if any."""
        missing = self.missing()
        if missing:
            raise RuntimeError(
                f"{self.partial}: blocks {listed(missing)} were not {self.step.past}; "
                f"rerun the workflow to {self.step.verb} them"
            )

    def publish(self, attrs: Mapping[str, Any] | None = None, scratch: Iterable[str] = ()) -> Path:
        """Check every block, store ``attrs`` and ``complete``, delete ``scratch`` folders, rename to :attr:`final`.

        A store already marked complete (publication interrupted after that) is not checked
        again: its scratch may already be gone.
        """
        if not self.complete:
            self.check()
            set_store_attrs(self.partial, {**(attrs or {}), "complete": True})
        for folder in scratch:
            shutil.rmtree(self.partial / folder, ignore_errors=True)
        commit(self.partial, self.final)
        return self.final


__all__ = ["BlockSettings", "BlockStore", "Step", "grid_record", "job_count", "job_share", "listed", "stage_grid"]
