"""The connected-components stitch, streamed over the blocks: memory grows with the objects that
cross block faces, not with the blocks or the objects inside them.

Input: block records as the decode block jobs write them (:mod:`~pipeline_lib.decoding.blockwise`:
``counts`` of the block-local ids ``1..n``, ``first{a}``/``crossing{a}`` on faces with a
neighbour below, ``last{a}`` on faces with one above), reached through ``open_record(i)``, a
context manager yielding block ``i``'s record (``np.load`` of its ``.npz``). Output: the stitch
table of :mod:`~pipeline_lib.decoding.partial_store` (``final``: the final id of every
block-local id, block after block; ``starts``), written through a memory map.

Two passes over the blocks' faces and counts, each holding one block's record and one
neighbour's at a time:

1. the pairs of objects joined across every face (:func:`~.stitching.crossing_pairs`);
   union–find over the objects in them only (objects that cross no face are their own
   components and are never held); the sizes of the components from the ``counts`` of their
   members (a pass over ``counts`` only);
2. final ids block by block: components (and lone objects) in the order of their first
   object (block, then local id), as :func:`~.stitching.final_labels` numbers them; a
   component of one voxel in all (a voxel without any edge) or below ``min_size`` voxels
   becomes background.

The table equals the in-memory stitch's (``relabel._final_table``) for ``small_objects:
background``; merging small objects needs global contacts and keeps the in-memory stitch.
Memory: the joined pairs (16 bytes each, and scipy's graph of them), the crossing objects'
ids and components (16 bytes each) and the per-block starts (8 bytes per block); ``final``
itself is written to disk, never held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from pipeline_lib.decoding.stitching import BLOCK_ID_SHIFT, LOCAL_MASK, crossing_pairs, globalize, lower_neighbour
from pipeline_lib.geometry import BlockGrid

OpenRecord = Callable[[int], AbstractContextManager[Mapping[str, Any]]]
PENDING = 4096  # faces' pair arrays gathered before they are joined into one array


def face_pairs(grid: BlockGrid, open_record: OpenRecord) -> tuple[NDArray[np.int64], list[NDArray[np.uint64]]]:
    """Per-block object counts, and the global id pairs joined across every face (in a few large arrays)."""
    n_objects = np.zeros(len(grid), dtype=np.int64)
    pairs: list[NDArray[np.uint64]] = [np.zeros((0, 2), dtype=np.uint64)]
    pending: list[NDArray[np.uint64]] = []
    for block_id in range(len(grid)):
        with open_record(block_id) as here:
            n_objects[block_id] = len(here["counts"])
            for axis in range(3):
                below = lower_neighbour(grid, block_id, axis)
                if below is None:
                    continue
                with open_record(below) as there:
                    local = crossing_pairs(here[f"first{axis}"], here[f"crossing{axis}"], there[f"last{axis}"])
                pending.append(np.stack([globalize(local[:, 0], block_id), globalize(local[:, 1], below)], axis=1))
        if len(pending) >= PENDING:  # a few large arrays, not one small array per face
            pairs.append(np.concatenate(pending))
            pending = []
    return n_objects, [*pairs, *pending]


def _components(pairs: list[NDArray[np.uint64]]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The sorted ids in ``pairs`` and the component of each under the pairs, numbered by smallest member.

    Empties ``pairs`` as it goes, turning each array into int32 (or int64) indices into the ids.
    """
    every = np.unique(np.concatenate([np.unique(p) for p in pairs]))
    small = np.int32 if len(every) < 2**31 else np.int64
    parts: list[NDArray[np.integer]] = []
    while pairs:  # each array of ids freed as soon as its indices exist
        parts.append(np.searchsorted(every, pairs.pop()).astype(small))
    index = np.concatenate(parts)
    del parts
    graph = coo_matrix((np.ones(len(index), np.int8), (index[:, 0], index[:, 1])), shape=(len(every), len(every)))
    del index
    _, component = graph_components(graph, directed=False)
    return every, component.astype(np.int64)


def _block_members(crossing_ids: NDArray[np.uint64], block_id: int) -> tuple[int, int, NDArray[np.int64]]:
    """Where block ``block_id``'s ids lie in the sorted ``crossing_ids``, and their local ids - 1."""
    bounds = np.array([block_id, block_id + 1], dtype=np.uint64) << BLOCK_ID_SHIFT
    lo, hi = (int(i) for i in np.searchsorted(crossing_ids, bounds))
    return lo, hi, (crossing_ids[lo:hi] & LOCAL_MASK).astype(np.int64) - 1


def _counts(open_record: OpenRecord, block_id: int) -> NDArray[np.int64]:
    with open_record(block_id) as record:
        return np.asarray(record["counts"], dtype=np.int64)


def stream_cc_table(grid: BlockGrid, open_record: OpenRecord, min_size: int, folder: Path) -> int:
    """Write ``final.npy`` and ``starts.npy`` of a connected-components stitch into ``folder``.

    Returns the object count; objects below ``min_size`` voxels (and of one voxel) become background.
    """
    n_objects, pairs = face_pairs(grid, open_record)
    crossing_ids, component = _components(pairs)
    del pairs
    n_components = int(component.max(initial=-1)) + 1
    member_counts = np.zeros(len(component), dtype=np.int64)
    for block_id in range(len(grid)):  # the voxel counts of the crossing objects
        lo, hi, members = _block_members(crossing_ids, block_id)
        if hi > lo:
            member_counts[lo:hi] = _counts(open_record, block_id)[members]
    sizes = np.bincount(component, weights=member_counts, minlength=n_components)
    kept = sizes >= max(min_size, 2)  # joined components have 2 voxels or more
    del sizes, member_counts
    first_member = np.full(n_components, len(component), dtype=np.int64)
    np.minimum.at(first_member, component, np.arange(len(component)))
    opens = np.zeros(len(component), dtype=bool)  # the member that numbers its component
    opens[first_member] = True
    del first_member
    component_final = np.zeros(n_components, dtype=np.uint64)
    starts = np.concatenate([[0], np.cumsum(n_objects)]).astype(np.int64)
    final = np.lib.format.open_memmap(folder / "final.npy", mode="w+", dtype=np.uint64, shape=(int(starts[-1]),))
    next_id = 1
    for block_id in range(len(grid)):
        lo, hi, members = _block_members(crossing_ids, block_id)
        member_components = component[lo:hi]
        counts = _counts(open_record, block_id)
        crossing = np.zeros(len(counts), dtype=bool)
        crossing[members] = True
        numbered = ~crossing & (counts >= max(min_size, 2))  # a lone object of one voxel has no edge
        numbered[members] = opens[lo:hi] & kept[member_components]
        new_ids = np.cumsum(numbered, dtype=np.int64) + (next_id - 1)
        next_id += int(numbered.sum())
        block_final = np.where(numbered, new_ids, 0).astype(np.uint64)
        component_final[member_components[numbered[members]]] = block_final[members[numbered[members]]]
        block_final[members] = component_final[member_components]
        final[starts[block_id] : starts[block_id + 1]] = block_final
    final.flush()
    del final
    np.save(folder / "starts.npy", starts)
    return next_id - 1


__all__ = ["OpenRecord", "stream_cc_table"]
