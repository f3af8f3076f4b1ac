"""Joining block-local objects into global ones: face pairs, union–find, small objects.

Each decode block job keeps its labels with block-local ids ``1..n`` (0 background); here a
block's labels are reached through a ``block_labels(block_id)`` callable (a memory map of
the block's label file, see :mod:`~pipeline_lib.decoding.blockwise`) and made global with
:func:`globalize` (``block_id << 32 | local id``). Functions read at most a few blocks (or
faces) at a time.

The object pairs to join (connected components, exact): :func:`crossing_pairs` joins
objects on both sides of a block face where the edge crossing the face exceeds the
threshold, the same rule as inside a block. The block job keeps its labels on its first
plane and the thresholded crossing edges there; the neighbour below keeps its labels on its
last plane. (The graph decoders join fragments through their region graph instead,
:mod:`~pipeline_lib.decoding.graph_decode`.)

Merging small objects (``small_objects: merge`` with ``min_size > 1``; the rule is
:mod:`~pipeline_lib.decoding.postprocess`'s) needs global contact counts and each object's
first voxel, and the stitch gets both from the block records, reading no label file: each
decode block job adds :func:`small_object_record` to its record (``first_voxel``, the
smallest global linear index of each local id's voxels; ``contact_pairs`` /
``contact_counts``, the pairs of different local ids sharing faces inside the block with
their face counts) and :func:`face_planes` (``first{a}`` / ``last{a}``, its labels on the
planes facing a neighbour below / above, which connected-components records hold anyway). :func:`component_contacts`
maps the local pairs through the component table and adds the pairs facing each other
across every block face; every face-adjacent voxel pair of the volume is counted once,
inside a block or across a face, as :func:`~pipeline_lib.decoding.postprocess.contacts`
counts it on the whole volume. A component's first voxel is the minimum over its pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from pipeline_lib.decoding.connected_components import plane
from pipeline_lib.decoding.postprocess import contacts, face_contacts, small_object_mapping
from pipeline_lib.geometry import BlockGrid

EMPTY_PAIRS = np.zeros((0, 2), dtype=np.uint64)
BLOCK_ID_SHIFT = np.uint64(32)
LOCAL_MASK = np.uint64(0xFFFFFFFF)


def globalize(local: NDArray[np.integer], block_id: int) -> NDArray[np.uint64]:
    """Global ids ``block_id << 32 | local id`` of block-local labels (0 stays 0)."""
    local = np.asarray(local)
    out = local.astype(np.uint64)
    out[local != 0] |= np.uint64(block_id) << BLOCK_ID_SHIFT
    return out


def lower_neighbour(grid: BlockGrid, block_id: int, axis: int) -> int | None:
    """Id of the block just below ``block_id`` along ``axis`` (None at the volume's start)."""
    index = list(grid.block_index(block_id))
    if index[axis] == 0:
        return None
    index[axis] -= 1
    return int(np.ravel_multi_index(index, grid.grid_shape))


def crossing_pairs(
    first: NDArray[np.integer], crossing: NDArray[np.bool_], last_below: NDArray[np.integer]
) -> NDArray[np.uint64]:
    """Distinct local id pairs ``(here, below)`` joined across one face.

    ``first``: a block's labels on its first plane along the axis; ``crossing``: whether the
    edge stored there (to the voxel below) exceeds the threshold; ``last_below``: the lower
    neighbour's labels on its last plane.
    """
    a, b = np.asarray(first).ravel(), np.asarray(last_below).ravel()
    joined = np.asarray(crossing).ravel() & (a != 0) & (b != 0)
    keys = (a[joined].astype(np.uint64) << BLOCK_ID_SHIFT) | b[joined].astype(np.uint64)
    if len(keys):  # objects are runs along a plane's rows: drop repeats before sorting
        keys = np.unique(keys[np.concatenate([[True], keys[1:] != keys[:-1]])])
    return np.stack([keys >> BLOCK_ID_SHIFT, keys & LOCAL_MASK], axis=1)


def components(ids: NDArray[np.uint64], pairs: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Component index of each of ``ids`` under the union of ``pairs`` (pairs with unknown ids are dropped)."""
    order = np.argsort(ids)
    sorted_ids = ids[order]
    if len(pairs):
        pos = np.searchsorted(sorted_ids, pairs)
        pos = np.minimum(pos, len(ids) - 1)
        known = (sorted_ids[pos] == pairs).all(axis=1)
        rows, cols = order[pos[known, 0]], order[pos[known, 1]]
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = graph_components(graph, directed=False)
    return component.astype(np.int64)


def final_labels(
    component: NDArray[np.int64],
    sizes: NDArray[np.int64],
    small: dict[int, int],
    background: NDArray[np.bool_] | None = None,
) -> NDArray[np.uint64]:
    """Final consecutive id of each object (by its index), after sending components away.

    ``small`` maps component indices to 0 (background) or to the component (index + 1)
    they merge into; components where ``background`` is true become 0 as well.
    """
    target = np.arange(len(sizes), dtype=np.int64)
    if background is not None:
        target[background] = -1
    for source, destination in small.items():
        target[source] = destination - 1 if destination else -1
    kept = np.zeros(len(sizes), dtype=bool)
    kept[target[target >= 0]] = True
    final = np.zeros(len(sizes) + 1, dtype=np.uint64)  # index -1 → 0
    final[:-1][kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.uint64)
    return final[target[component]]


def small_object_record(
    labels: NDArray[np.unsignedinteger], grid: BlockGrid, block_id: int, n_objects: int
) -> dict[str, NDArray[Any]]:
    """What block ``block_id`` adds to its record for merging small objects (module docstring).

    ``labels``: the block's own region with local ids ``1..n_objects`` (0 background), each
    present at least once.
    """
    block = grid.block(block_id)
    # the first occurrence in the block's C order (fastremap follows the memory order, so C-contiguous)
    ids, first_index = fastremap.unique(np.ascontiguousarray(labels), return_index=True)
    keep = ids != 0
    local = np.unravel_index(first_index[keep], block.shape)
    first_voxel = np.full(n_objects, np.iinfo(np.int64).max, dtype=np.int64)
    # within a box, the block's C order is the volume's: the block's first voxel of an id is its global first
    first_voxel[ids[keep].astype(np.int64) - 1] = np.ravel_multi_index(
        tuple(c + b for c, b in zip(local, block.begin, strict=True)), grid.shape
    )
    pairs, counts = contacts(labels)
    return {"first_voxel": first_voxel, "contact_pairs": pairs.astype(np.uint32), "contact_counts": counts}


def face_planes(labels: NDArray[np.unsignedinteger], grid: BlockGrid, block_id: int) -> dict[str, NDArray[Any]]:
    """A block's labels on its faces towards neighbours: its first plane along each axis with
    a neighbour below (``first{a}``), its last plane along each axis with one above (``last{a}``)."""
    block = grid.block(block_id)
    planes: dict[str, NDArray[Any]] = {}
    for axis in range(3):
        if block.begin[axis] > 0:
            planes[f"first{axis}"] = plane(labels, axis, 0)
        if block.end[axis] < grid.shape[axis]:
            planes[f"last{axis}"] = plane(labels, axis, -1)
    return planes


def _component_pairs(
    a: NDArray[np.uint64], b: NDArray[np.uint64], counts: NDArray[np.int64], width: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Keys ``lo * width + hi`` of component pairs (index + 1) that differ, both non-zero, with counts."""
    differ = (a != b) & (a != 0) & (b != 0)
    a, b = a[differ].astype(np.int64), b[differ].astype(np.int64)
    return np.minimum(a, b) * width + np.maximum(a, b), counts[differ]


def component_contacts(
    grid: BlockGrid,
    block_record: Callable[[int], Any],
    block_table: Callable[[int], NDArray[np.uint64]],
    n_components: int,
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Contact pairs of components (index + 1) with face counts over the whole volume, from the records.

    ``block_record(i)`` opens block ``i``'s record (a context manager such as ``np.load`` of
    the ``.npz``); ``block_table(i)[local id]`` is the component (index + 1, or 0 for
    background) of each local id of block ``i``.
    """
    width = n_components + 1
    keys, counts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for block_id in range(len(grid)):
        table = block_table(block_id)
        with block_record(block_id) as record:
            local = record["contact_pairs"]
            k, c = _component_pairs(table[local[:, 0]], table[local[:, 1]], record["contact_counts"], width)
            keys.append(k)
            counts.append(c)
            for axis in range(3):
                neighbour = lower_neighbour(grid, block_id, axis)
                if neighbour is None:
                    continue
                with block_record(neighbour) as below:
                    facing = face_contacts(table[record[f"first{axis}"]], block_table(neighbour)[below[f"last{axis}"]])
                k, c = _component_pairs(facing[:, 0], facing[:, 1], np.ones(len(facing), dtype=np.int64), width)
                keys.append(k)
                counts.append(c)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    summed = np.bincount(inverse, weights=np.concatenate(counts), minlength=len(unique)).astype(np.int64)
    pairs = np.stack([unique // width, unique % width], axis=1).astype(np.uint64)
    return pairs, summed


def small_components(
    sizes: NDArray[np.int64],
    min_size: int,
    mode: str,
    contact_pairs: NDArray[np.uint64],
    contact_counts: NDArray[np.int64],
    first_voxels: NDArray[np.int64] | None = None,
) -> dict[int, int]:
    """Component index → 0 or target component index + 1, for components below ``min_size``.

    ``contact_pairs`` hold components as index + 1; ``first_voxels[k]`` is component ``k``'s
    smallest global linear index (the tie-break of :mod:`~pipeline_lib.decoding.postprocess`).
    """
    labels = np.arange(1, len(sizes) + 1, dtype=np.uint64)
    mapping = small_object_mapping(labels, sizes, contact_pairs, contact_counts, min_size, mode, first_voxels)  # type: ignore[arg-type]
    return {label - 1: target for label, target in mapping.items()}


__all__ = [
    "BLOCK_ID_SHIFT",
    "component_contacts",
    "components",
    "crossing_pairs",
    "face_planes",
    "final_labels",
    "globalize",
    "lower_neighbour",
    "small_components",
    "small_object_record",
]
