"""Joining block-local objects into global ones: face pairs, overlap agreement, union–find.

All functions read at most one block (or one block face/slab) of the segmentation at a time.

Two ways to find the object pairs to join, chosen by the decoder's registration:

- :func:`affinity_face_pairs` (exact, connected components): objects on both sides of a
  block face are joined where the affinity of the edge crossing the face exceeds the
  threshold, the same rule as inside a block.
- :func:`overlap_face_pairs` (watershed, waterz, mutex watershed): each block was decoded
  with a halo, and the labels it gave inside the halo were kept (``halo slabs``). Across the
  face between blocks A (below) and B (above), B's halo labels on A's side are compared with
  A's own labels there, and A's halo labels on B's side with B's own labels (the overlap
  stitching of cluster_tools' blockwise mutex watershed, ``stitch_faces``). Objects ``p``
  and ``q`` that share ``n`` voxels in such an overlap are joined when
  ``min(n / n_p, n / n_q) > stitch_overlap``, with ``n_p`` and ``n_q`` their voxel counts in
  the overlap: *mutual* agreement. A one-sided rule (the larger ratio) was tried first: on
  noisy affinities it let one object wrongly merged near a block's context edge join
  everything it overlaps, and the deviation from whole-volume decoding was 3–10× larger.
  Objects seen only in a halo (no voxel in any block's own region) are ignored, so they
  cannot bridge two objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from pipeline_lib.decoding.affinity_io import read_affinities
from pipeline_lib.decoding.postprocess import contacts, count_pairs, face_contacts, small_object_mapping
from pipeline_lib.geometry import BlockGrid, Box

EMPTY_PAIRS = np.zeros((0, 2), dtype=np.uint64)


def lower_face(block: Box, axis: int, depth: int = 1) -> tuple[Box, Box]:
    """(first ``depth`` planes of ``block`` along ``axis``, the ``depth`` planes just below it)."""
    begin, end = list(block.begin), list(block.end)
    here = Box(tuple(begin), tuple(end[:axis] + [begin[axis] + depth] + end[axis + 1 :]))
    there = here.shift(tuple(-depth if a == axis else 0 for a in range(3)))
    return here, there


def halo_slabs(block: Box, context: Box) -> dict[str, Box]:
    """Parts of ``context`` beside each face of ``block`` (``lo{axis}``, ``hi{axis}``), block-wide."""
    slabs = {}
    for axis in range(3):
        lo_depth = block.begin[axis] - context.begin[axis]
        hi_depth = context.end[axis] - block.end[axis]
        if lo_depth > 0:
            slabs[f"lo{axis}"] = lower_face(block, axis, lo_depth)[1]
        if hi_depth > 0:
            upper = lower_face(block, axis, hi_depth)[0].shift(
                tuple(block.shape[axis] if a == axis else 0 for a in range(3))
            )
            slabs[f"hi{axis}"] = upper
    return slabs


def affinity_face_pairs(
    segmentation: Any, affinities: Any, block: Box, channels: Sequence[int], threshold: float
) -> NDArray[np.uint64]:
    """Label pairs joined by an edge crossing the block's lower face along each axis."""
    pairs = [EMPTY_PAIRS]
    for axis in range(3):
        if block.begin[axis] == 0:
            continue
        here, there = lower_face(block, axis)
        a = np.asarray(segmentation[here.slices]).ravel()
        b = np.asarray(segmentation[there.slices]).ravel()
        edge = read_affinities(affinities, here, channels[axis]).ravel()
        joined = (edge > threshold) & (a != 0) & (b != 0)
        pairs.append(np.stack([a[joined], b[joined]], axis=1).astype(np.uint64))
    return np.concatenate(pairs)


def agreeing_pairs(p: NDArray[np.integer], q: NDArray[np.integer], threshold: float) -> NDArray[np.uint64]:
    """Pairs ``(p_id, q_id)`` of two labellings of one region that agree (module rule)."""
    p, q = p.ravel().astype(np.uint64), q.ravel().astype(np.uint64)
    p_ids, p_inv, p_counts = np.unique(p, return_inverse=True, return_counts=True)
    q_ids, q_inv, q_counts = np.unique(q, return_inverse=True, return_counts=True)
    both = (p != 0) & (q != 0)
    if not both.any():
        return EMPTY_PAIRS
    cells, n = np.unique(p_inv[both].astype(np.int64) * len(q_ids) + q_inv[both], return_counts=True)
    pi, qi = np.divmod(cells, len(q_ids))
    agree = np.minimum(n / p_counts[pi], n / q_counts[qi]) > threshold
    return np.stack([p_ids[pi[agree]], q_ids[qi[agree]]], axis=1)


def overlap_face_pairs(
    segmentation: Any, grid: BlockGrid, block_id: int, slabs: dict[int, Any], threshold: float
) -> NDArray[np.uint64]:
    """Agreeing pairs across the lower faces of ``block_id``; ``slabs`` maps block ids to halo records."""
    pairs = [EMPTY_PAIRS]
    block = grid.block(block_id)
    index = grid.block_index(block_id)
    grid_shape = grid.grid_shape
    for axis in range(3):
        if index[axis] == 0:
            continue
        below = list(index)
        below[axis] -= 1
        neighbour = int(np.ravel_multi_index(below, grid_shape))
        here_halo = slabs[block_id][f"lo{axis}"]  # our labels on the neighbour's side
        depth = here_halo.shape[axis]
        _, there = lower_face(block, axis, depth)
        pairs.append(agreeing_pairs(here_halo, np.asarray(segmentation[there.slices]), threshold))
        their_halo = slabs[neighbour][f"hi{axis}"]  # the neighbour's labels on our side
        here, _ = lower_face(block, axis, their_halo.shape[axis])
        pairs.append(agreeing_pairs(their_halo, np.asarray(segmentation[here.slices]), threshold))
    return np.concatenate(pairs)


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


def lookup(values: NDArray[np.uint64], ids: NDArray[np.uint64], table: NDArray[Any]) -> NDArray[Any]:
    """``table[i]`` for each value equal to ``ids[i]`` (``ids`` sorted); 0 stays 0."""
    index = (
        np.minimum(np.searchsorted(ids, values), len(ids) - 1) if len(ids) else np.zeros_like(values, dtype=np.int64)
    )
    out = table[index] if len(ids) else np.zeros(values.shape, dtype=table.dtype)
    out[values == 0] = 0
    return out


def final_labels(component: NDArray[np.int64], sizes: NDArray[np.int64], small: dict[int, int]) -> NDArray[np.uint64]:
    """Final consecutive id of each object (by its index), after sending small components away.

    ``small`` maps component indices to 0 (background) or to the component (index + 1)
    they merge into.
    """
    target = np.arange(len(sizes), dtype=np.int64)
    for source, destination in small.items():
        target[source] = destination - 1 if destination else -1
    kept = np.zeros(len(sizes), dtype=bool)
    kept[target[target >= 0]] = True
    final = np.zeros(len(sizes) + 1, dtype=np.uint64)  # index -1 → 0
    final[:-1][kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.uint64)
    return final[target[component]]


def component_contacts(
    segmentation: Any, grid: BlockGrid, ids: NDArray[np.uint64], component: NDArray[np.int64]
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Contact pairs (component index + 1) with face counts over the whole volume, block by block.

    ``ids`` (sorted) are the block-local ids of the segmentation and ``component`` their components.
    """
    table = (component + 1).astype(np.uint64)
    pairs, counts = [], []
    for _, block in grid.blocks():
        p, c = contacts(lookup(np.asarray(segmentation[block.slices]), ids, table))
        pairs.append(p)
        counts.append(c)
        for axis in range(3):
            if block.begin[axis] == 0:
                continue
            here, there = lower_face(block, axis)
            a = lookup(np.asarray(segmentation[here.slices]), ids, table)
            b = lookup(np.asarray(segmentation[there.slices]), ids, table)
            p, c = count_pairs(face_contacts(a, b))
            pairs.append(p)
            counts.append(c)
    all_pairs = np.concatenate(pairs) if pairs else EMPTY_PAIRS
    all_counts = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    if len(all_pairs) == 0:
        return EMPTY_PAIRS, np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(all_pairs, axis=0, return_inverse=True)
    return unique, np.bincount(inverse.ravel(), weights=all_counts).astype(np.int64)


def small_components(
    sizes: NDArray[np.int64],
    min_size: int,
    mode: str,
    contact_pairs: NDArray[np.uint64],
    contact_counts: NDArray[np.int64],
) -> dict[int, int]:
    """Component index → 0 or target component index + 1, for components below ``min_size``."""
    labels = np.arange(1, len(sizes) + 1, dtype=np.uint64)
    mapping = small_object_mapping(labels, sizes, contact_pairs, contact_counts, min_size, mode)  # type: ignore[arg-type]
    return {label - 1: target for label, target in mapping.items()}


__all__ = [
    "affinity_face_pairs",
    "agreeing_pairs",
    "component_contacts",
    "components",
    "final_labels",
    "halo_slabs",
    "lookup",
    "lower_face",
    "overlap_face_pairs",
    "small_components",
]
