"""Post-processing shared by all decoders: small objects, consecutive relabelling.

Contracts:

- :func:`remove_small_objects` treats label 0 as background and never creates labels.
  With ``mode="background"`` objects below ``min_size`` voxels become 0. With
  ``mode="merge"`` each of them joins the *large* object (at least ``min_size`` voxels) it
  shares most faces with: contacts are counted with 6-connectivity, each face-adjacent pair
  of voxels with different non-zero labels once (:func:`contacts`). Ties in contact count go
  to the neighbour whose first voxel in C order of the whole volume comes first (the
  smallest linear index of its voxels), a key that does not depend on how ids are numbered:
  whole-volume decoding numbers objects as its decoder does, blockwise decoding by block,
  and both pick the same neighbour. A small object that touches no large object becomes 0.
  Small objects are not chained: small neighbours are ignored, even one sharing more faces
  than any large neighbour, and a small object touching only small ones becomes 0 (it does
  not follow them into a large object). So the result is one deterministic pass over global
  sizes, contact counts and first voxels (:func:`small_object_mapping`), which the blockwise
  path (:mod:`~pipeline_lib.decoding.relabel`) computes from its block records and
  reproduces exactly.
- :func:`relabel_consecutive` maps the labels to ``1..n`` (0 stays 0).
"""

from __future__ import annotations

from typing import Literal

import fastremap
import numpy as np
from numpy.typing import NDArray

SmallObjects = Literal["background", "merge"]


def _pairs_along(a: NDArray[np.integer], b: NDArray[np.integer]) -> NDArray[np.uint64]:
    """Unordered label pairs (lo, hi) of facing voxels ``a[i]``, ``b[i]`` that differ, both non-zero."""
    a, b = a.ravel(), b.ravel()
    touching = (a != b) & (a != 0) & (b != 0)
    a, b = a[touching].astype(np.uint64), b[touching].astype(np.uint64)
    return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)


def count_pairs(pairs: NDArray[np.uint64]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Distinct rows of ``pairs`` (n, 2) and how often each occurs."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.uint64), np.zeros(0, dtype=np.int64)
    pairs = pairs.astype(np.uint64, copy=False)
    if int(pairs.max()) < 2**32:  # one 64-bit key per row: much faster than unique rows
        keys, counts = np.unique((pairs[:, 0] << np.uint64(32)) | pairs[:, 1], return_counts=True)
        unique = np.stack([keys >> np.uint64(32), keys & np.uint64(0xFFFFFFFF)], axis=1)
    else:
        unique, counts = np.unique(pairs, axis=0, return_counts=True)
    return unique.astype(np.uint64), counts.astype(np.int64)


def contacts(labels: NDArray[np.integer]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Pairs of different non-zero labels sharing a face inside ``labels``, with face counts."""
    pairs = []
    for axis in range(labels.ndim):
        hi = [slice(None)] * labels.ndim
        lo = [slice(None)] * labels.ndim
        hi[axis], lo[axis] = slice(1, None), slice(None, -1)
        pairs.append(_pairs_along(labels[tuple(hi)], labels[tuple(lo)]))
    return count_pairs(np.concatenate(pairs))


def face_contacts(here: NDArray[np.integer], there: NDArray[np.integer]) -> NDArray[np.uint64]:
    """Label pairs of two facing planes (e.g. both sides of a block face), one row per face."""
    return _pairs_along(here, there)


def small_object_mapping(
    ids: NDArray[np.uint64],
    sizes: NDArray[np.int64],
    pairs: NDArray[np.uint64],
    counts: NDArray[np.int64],
    min_size: int,
    mode: SmallObjects,
    first_voxels: NDArray[np.int64] | None = None,
) -> dict[int, int]:
    """Where each object below ``min_size`` goes (see the module contract); others are absent.

    ``pairs``/``counts`` are contact pairs with their face counts (any row order, each pair
    at most once); ``first_voxels[k]`` is the smallest linear index (C order, whole volume)
    of the voxels of ``ids[k]``, the tie-break key, needed for ``mode="merge"``.
    """
    small = ids[sizes < min_size]
    mapping = {int(i): 0 for i in small}
    if mode == "background" or len(small) == 0 or len(pairs) == 0:
        return mapping
    if first_voxels is None:
        raise ValueError("merging small objects needs each object's first voxel (the tie-break key)")
    large = ids[sizes >= min_size]
    a, b = pairs[:, 0], pairs[:, 1]
    a_small, b_small = np.isin(a, small), np.isin(b, small)
    a_large, b_large = np.isin(a, large), np.isin(b, large)
    src = np.concatenate([a[a_small & b_large], b[b_small & a_large]])
    dst = np.concatenate([b[a_small & b_large], a[b_small & a_large]])
    weight = np.concatenate([counts[a_small & b_large], counts[b_small & a_large]])
    by_id = np.argsort(ids)
    dst_key = np.asarray(first_voxels)[by_id[np.searchsorted(ids[by_id], dst)]]
    order = np.lexsort((dst_key, -weight, src))  # per source: most contacts first, then first voxel
    src, dst = src[order], dst[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = src[1:] != src[:-1]
    mapping.update(zip(src[first].tolist(), dst[first].tolist(), strict=True))
    return mapping


def remove_small_objects(
    labels: NDArray[np.integer], min_size: int, mode: SmallObjects = "background"
) -> NDArray[np.integer]:
    """``labels`` with objects below ``min_size`` voxels removed or merged (see module contract)."""
    if min_size <= 1:
        return labels
    # fastremap's first indices follow the memory order: C order needs a C-contiguous array (decoders may return F)
    ids, first_voxels, sizes = fastremap.unique(np.ascontiguousarray(labels), return_index=True, return_counts=True)
    keep = ids != 0
    ids, sizes, first_voxels = ids[keep].astype(np.uint64), sizes[keep].astype(np.int64), first_voxels[keep]
    if mode == "merge" and (sizes < min_size).any():
        pairs, counts = contacts(labels)
    else:
        pairs, counts = np.zeros((0, 2), dtype=np.uint64), np.zeros(0, dtype=np.int64)
    mapping = small_object_mapping(ids, sizes, pairs, counts, min_size, mode, first_voxels.astype(np.int64))
    if not mapping:
        return labels
    return fastremap.remap(labels, mapping, preserve_missing_labels=True, in_place=False)


def relabel_consecutive(labels: NDArray[np.integer]) -> NDArray[np.integer]:
    """Labels ``1..n`` numbered in order of first appearance (C order); 0 stays 0; dtype ≥ uint32."""
    relabelled, _ = fastremap.renumber(labels, start=1, preserve_zero=True, in_place=False)
    if relabelled.dtype.itemsize < 4:
        relabelled = relabelled.astype(np.uint32)
    return relabelled


__all__ = [
    "contacts",
    "count_pairs",
    "face_contacts",
    "relabel_consecutive",
    "remove_small_objects",
    "small_object_mapping",
]
