"""Region adjacency graph of fragments: edge statistics from voxel contacts, accumulated blockwise.

A *contact* of channel ``k`` (offset ``o``) is a voxel ``v`` whose fragment differs from
that of ``v + o`` (both non-zero); its value is the affinity stored at ``v`` in channel
``k`` as ``uint8`` (0–255; float stores are rounded to it, :func:`as_uint8`). Contacts of
the nearest-neighbour channels make the *nearest* edges, those of the other channels the
*long-range* edges. An edge ``(u, v)`` (``u < v``) keeps

- ``count``: its contacts; ``total``: the sum of their values (mean affinity
  ``total / count / 255``);
- for nearest edges, the histogram of the values (256 bins, one per ``uint8`` value),
  stored sparsely: ``hist_edge``, ``hist_bin``, ``hist_count`` rows sorted by edge then
  bin (the statistic of waterz's ``affQQ_his256`` scores).

Blockwise (:mod:`~pipeline_lib.decoding.graph_decode`), each block records the contacts
among its own fragments (:func:`block_edges`, block-local ids) and the face data for the
contacts across its lower faces (:func:`face_edges` combines them with the lower
neighbour's record); the graph job turns local ids into global node indices and sums all
tables with :func:`combine`. Every contact is counted exactly once: inside a block, or
across a face when ``v`` lies in the upper block and ``v + o`` in the lower one. Offsets
with more than one non-zero component are counted across faces only where ``v + o`` lies
in the face neighbour (not in a diagonal one); the pipeline's offsets are axis-aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.offsets import NEAREST_NEIGHBOUR_OFFSETS

BINS = 256


def as_uint8(stored: NDArray[Any]) -> NDArray[np.uint8]:
    """Stored affinities as ``uint8`` 0–255 (floats in [0, 1] are rounded to the nearest step)."""
    if stored.dtype == np.uint8:
        return stored
    return np.round(np.clip(stored.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class EdgeTable:
    """Edges ``(u[i], v[i])`` with ``u < v`` (sorted, unique) and their statistics (module docstring)."""

    u: NDArray[np.int64]
    v: NDArray[np.int64]
    count: NDArray[np.int64]
    total: NDArray[np.int64]
    hist_edge: NDArray[np.int64]
    hist_bin: NDArray[np.uint8]
    hist_count: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.u)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self))

    def mean(self) -> NDArray[np.float64]:
        """Mean affinity of each edge in [0, 1]."""
        return self.total / np.maximum(self.count, 1) / 255.0

    def save(self, prefix: str) -> dict[str, NDArray[Any]]:
        """The table as arrays named ``<prefix>_<field>`` (for ``np.savez``)."""
        return {f"{prefix}_{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def load(cls, arrays: Any, prefix: str) -> EdgeTable:
        return cls(**{f.name: np.asarray(arrays[f"{prefix}_{f.name}"]) for f in fields(cls)})


def empty_table() -> EdgeTable:
    i = np.zeros(0, dtype=np.int64)
    return EdgeTable(i, i, i, i, i, np.zeros(0, dtype=np.uint8), i)


def aggregate(u: NDArray[np.integer], v: NDArray[np.integer], values: NDArray[np.uint8], histogram: bool) -> EdgeTable:
    """Edge table of single contacts ``(u[i], v[i])`` with value ``values[i]`` (any order of ``u``, ``v``)."""
    lo = np.minimum(u, v).astype(np.int64)
    hi = np.maximum(u, v).astype(np.int64)
    if len(lo) == 0:
        return empty_table()
    keys, width, ids = _pair_keys(lo, hi, BINS)
    if histogram:
        cells, cell_count = np.unique(keys * BINS + values, return_counts=True)
        cell_key, cell_bin = np.divmod(cells, BINS)
        edge_keys, first, edge_of_cell = np.unique(cell_key, return_index=True, return_inverse=True)
        count = np.bincount(edge_of_cell, weights=cell_count).astype(np.int64)
        total = np.bincount(edge_of_cell, weights=cell_count * cell_bin).astype(np.int64)
        hist = (edge_of_cell.astype(np.int64), cell_bin.astype(np.uint8), cell_count.astype(np.int64))
    else:
        edge_keys, inverse, count = np.unique(keys, return_inverse=True, return_counts=True)
        total = np.bincount(inverse, weights=values).astype(np.int64)
        empty = np.zeros(0, dtype=np.int64)
        hist = (empty, np.zeros(0, dtype=np.uint8), empty)
    eu, ev = np.divmod(edge_keys, width)
    if ids is not None:
        eu, ev = ids[eu], ids[ev]
    return EdgeTable(eu, ev, count.astype(np.int64), total, *hist)


def _pair_keys(
    lo: NDArray[np.int64], hi: NDArray[np.int64], room: int = 1
) -> tuple[NDArray[np.int64], int, NDArray[np.int64] | None]:
    """Keys ``lo * width + hi`` that stay below ``2**63 / room``: (keys, width, ids or None).

    Node ids too large for that (graphs of billions of fragments) are first replaced by their
    rank among the ids present; ``ids[rank]`` gives them back.
    """
    width = int(hi.max(initial=0)) + 1
    if width < 2**31 // max(1, int(np.sqrt(room))):
        return lo * width + hi, width, None
    ids, inverse = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    if len(ids) >= 2**31 // max(1, int(np.sqrt(room))):
        raise OverflowError(f"{len(ids)} distinct fragments in one edge table: too many for int64 pair keys")
    rank_lo, rank_hi = inverse[: len(lo)].astype(np.int64), inverse[len(lo) :].astype(np.int64)
    return rank_lo * len(ids) + rank_hi, len(ids), ids


def combine(tables: Sequence[EdgeTable], endpoints: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]]) -> EdgeTable:
    """One table summing ``tables`` whose rows get the endpoints ``endpoints[i]`` (node indices)."""
    us, vs, counts, totals, h_edge, h_bin, h_count = [], [], [], [], [], [], []
    start = 0
    for table, (u, v) in zip(tables, endpoints, strict=True):
        us.append(np.minimum(u, v))
        vs.append(np.maximum(u, v))
        counts.append(table.count)
        totals.append(table.total)
        h_edge.append(table.hist_edge + start)
        h_bin.append(table.hist_bin)
        h_count.append(table.hist_count)
        start += len(table)
    if start == 0:
        return empty_table()
    u, v = np.concatenate(us), np.concatenate(vs)
    keep = u != v  # two fragments that became one node: no edge
    pair_keys, width, ids = _pair_keys(u[keep], v[keep])
    keys, inverse = np.unique(pair_keys, return_inverse=True)
    n = len(keys)
    row = np.full(start, -1, dtype=np.int64)
    row[keep] = inverse
    count = np.bincount(inverse, weights=np.concatenate(counts)[keep], minlength=n).astype(np.int64)
    total = np.bincount(inverse, weights=np.concatenate(totals)[keep], minlength=n).astype(np.int64)
    hist_row = row[np.concatenate(h_edge)]
    in_graph = hist_row >= 0
    cells, cell_inverse = np.unique(hist_row[in_graph] * BINS + np.concatenate(h_bin)[in_graph], return_inverse=True)
    cell_count = np.bincount(cell_inverse, weights=np.concatenate(h_count)[in_graph], minlength=len(cells))
    cell_edge, cell_bin = np.divmod(cells, BINS)
    eu, ev = np.divmod(keys, width)
    if ids is not None:
        eu, ev = ids[eu], ids[ev]
    return EdgeTable(eu, ev, count, total, cell_edge, cell_bin.astype(np.uint8), cell_count.astype(np.int64))


def _pair_slices(
    shape: Sequence[int], offset: Sequence[int], axis: int | None = None, split: int = 0
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices (at ``v``, at ``v + offset``) over every ``v`` with both inside ``shape``.

    With ``axis``: only ``v`` at index ``>= split`` along ``axis`` whose partner lies below
    ``split`` (contacts crossing the plane ``split``); None when there is none.
    """
    here, there = [], []
    for a, (n, o) in enumerate(zip(shape, offset, strict=True)):
        begin, end = max(0, -o), min(n, n - o)
        if a == axis:
            begin, end = max(begin, split), min(end, split - o)
        if begin >= end:
            return None
        here.append(slice(begin, end))
        there.append(slice(begin + o, end + o))
    return tuple(here), tuple(there)


def _contacts(
    labels: NDArray[np.integer],
    stored: NDArray[np.uint8],
    offsets: Sequence[Sequence[int]],
    channels: Sequence[int],
    histogram: bool,
    axis: int | None = None,
    split: int = 0,
) -> EdgeTable:
    us, vs, values = [], [], []
    for k in channels:
        slices = _pair_slices(labels.shape, offsets[k], axis, split)
        if slices is None:
            continue
        here, there = slices
        a, b = labels[here].ravel(), labels[there].ravel()
        contact = (a != b) & (a != 0) & (b != 0)
        us.append(a[contact])
        vs.append(b[contact])
        values.append(stored[k][here].ravel()[contact])
    if not us:
        return empty_table()
    return aggregate(np.concatenate(us), np.concatenate(vs), np.concatenate(values), histogram)


def nearest_split(offsets: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Channel indices of ``offsets``: (nearest-neighbour ones, the others)."""
    nearest = [k for k, o in enumerate(offsets) if [int(v) for v in o] in NEAREST_NEIGHBOUR_OFFSETS]
    return nearest, [k for k in range(len(offsets)) if k not in nearest]


def block_edges(
    labels: NDArray[np.integer], stored: NDArray[np.uint8], offsets: Sequence[Sequence[int]]
) -> tuple[EdgeTable, EdgeTable]:
    """(nearest, long-range) edge tables of the contacts inside one labelled region."""
    nearest, others = nearest_split(offsets)
    return (
        _contacts(labels, stored, offsets, nearest, histogram=True),
        _contacts(labels, stored, offsets, others, histogram=False),
    )


def face_depth(offsets: Sequence[Sequence[int]], axis: int) -> int:
    """Planes on each side of a face that contacts across it can reach along ``axis``."""
    return max(1, max(-int(o[axis]) for o in offsets))


def face_edges(
    first: NDArray[np.integer],
    stored_first: NDArray[np.uint8],
    last_below: NDArray[np.integer],
    offsets: Sequence[Sequence[int]],
    axis: int,
) -> tuple[EdgeTable, EdgeTable]:
    """(nearest, long-range) tables of the contacts across a face along ``axis``.

    ``first``: the upper block's first :func:`face_depth` planes (node ids, 0 for none),
    ``stored_first`` the affinities stored there (all channels); ``last_below``: the lower
    block's last planes (node ids; fewer when that block is thinner).
    """
    depth = last_below.shape[axis]
    labels = np.concatenate([last_below, first], axis=axis)
    below = np.zeros((len(stored_first), *last_below.shape), dtype=stored_first.dtype)
    stored = np.concatenate([below, stored_first], axis=axis + 1)
    nearest, others = nearest_split(offsets)
    return (
        _contacts(labels, stored, offsets, nearest, True, axis, depth),
        _contacts(labels, stored, offsets, others, False, axis, depth),
    )


__all__ = [
    "BINS",
    "EdgeTable",
    "aggregate",
    "as_uint8",
    "block_edges",
    "combine",
    "empty_table",
    "face_depth",
    "face_edges",
    "nearest_split",
]
