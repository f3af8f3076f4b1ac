"""Connected components of the thresholded nearest-neighbour affinity graph (with ``cc3d``).

Two voxels ``v`` and ``v - e_a`` are joined when the affinity stored at ``v`` in the
channel with offset ``-e_a`` exceeds the threshold (the convention of docs/conventions.md).
Voxels joined to no neighbour are background (0), i.e. exactly the components of one voxel.

Blockwise (:func:`label_block`), a block is labelled with its own edges only, read without
a halo; the edges stored on its first plane along each axis cross its lower faces and are
returned for the stitch (:mod:`~pipeline_lib.decoding.blockwise`). A one-voxel component
inside the block has no edge at all and is background at once; one on a face is kept, as
an edge across the face may join it, and the stitch sends it to background when its global
size is 1. Thresholding happens in the stored domain (:func:`edges_above`), equal to
``as_float(stored) > threshold`` value by value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cc3d
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.io.affinities import as_float
from pipeline_lib.offsets import nearest_neighbour_channels

# cc3d labels in Fortran order and first copies a graph in any other layout to it (0.13-0.2 s
# per 62.5 Mvoxel here, ``benchmarks/bench_decode.py``). So graphs are built as C-ordered
# (z, y, x) arrays and cc3d labels their transpose (x, y, z), which is Fortran-ordered
# without a copy (:func:`label_graph`). Its axes are reversed, so the bit linking voxel v to
# v - e_a for numpy axis a of (z, y, x) is cc3d's minus-direction bit of its axis 2 - a
# (cc3d: axis 0 -> 2, axis 1 -> 8, axis 2 -> 32).
MINUS_BIT = (32, 8, 2)


def uint8_cutoff(threshold: float) -> int:
    """The smallest stored ``uint8`` value ``k`` with ``as_float(k) > threshold`` (256: none).

    ``as_float`` is monotone, so ``stored >= uint8_cutoff(t)`` equals ``as_float(stored) > t``
    for every value (``tests/decoding`` checks all 256 values).
    """
    above = as_float(np.arange(256, dtype=np.uint8)) > threshold
    if not np.array_equal(above, np.sort(above)):  # pragma: no cover - as_float is monotone
        raise AssertionError("as_float is not monotone on uint8")
    return int(256 - above.sum())


def edges_above(stored: NDArray[Any], threshold: float) -> NDArray[np.bool_]:
    """``as_float(stored) > threshold`` computed in the stored dtype where that is exact (uint8)."""
    if stored.dtype == np.uint8:
        cutoff = uint8_cutoff(threshold)
        return stored >= cutoff if cutoff < 256 else np.zeros(stored.shape, dtype=bool)
    return as_float(stored) > threshold


def graph_from_edges(edges: Sequence[NDArray[np.bool_]]) -> NDArray[np.uint8]:
    """Voxel-connectivity graph (:data:`MINUS_BIT`, for :func:`label_graph`) from the edge masks of axes z, y, x.

    The edge ``v — v - e_a`` is at ``v``. The edges on the first plane of each axis point
    outside the array and are left out, so a block's graph holds only its own edges.
    """
    graph = np.zeros(edges[0].shape, dtype=np.uint8)
    for axis, edge in enumerate(edges):
        bits = edge.view(np.uint8) * np.uint8(MINUS_BIT[axis])
        first = [slice(None)] * 3
        first[axis] = slice(0, 1)
        bits[tuple(first)] = 0
        graph |= bits
    return graph


def label_graph(graph: NDArray[np.uint8]) -> tuple[NDArray[np.uint32], int]:
    """Components of a :func:`graph_from_edges` graph: C-ordered labels ``1..n`` (every voxel labelled), and ``n``."""
    raw: NDArray[np.uint32]
    n: int
    raw, n = cc3d.color_connectivity_graph(graph.T, connectivity=6, return_N=True)  # type: ignore[call-overload]
    return raw.T, int(n)


def affinity_graph(
    affinities: NDArray[np.generic], offsets: Sequence[Sequence[int]], threshold: float
) -> NDArray[np.uint8]:
    """Voxel-connectivity graph (:func:`graph_from_edges`) with an edge wherever the affinity exceeds ``threshold``.

    ``affinities`` are floats in [0, 1] or stored ``uint8`` (see :func:`edges_above`).
    """
    channels = nearest_neighbour_channels(offsets)
    return graph_from_edges([edges_above(affinities[c], threshold) for c in channels])


def plane(array: NDArray[Any], axis: int, index: int) -> NDArray[Any]:
    """A contiguous copy of ``array``'s plane ``index`` along ``axis``."""
    where: list[slice | int] = [slice(None)] * array.ndim
    where[axis] = index
    return np.ascontiguousarray(array[tuple(where)])


@dataclass(frozen=True)
class BlockLabels:
    """One block's components (:func:`label_block`).

    ``labels``: local ids ``1..n`` (0 background), ``uint16`` when ``n < 2**16`` else
    ``uint32``; ``counts[i - 1]``: voxels of local id ``i``; ``crossing[a]``: the edges
    stored on the block's first plane along axis ``a`` (they cross its lower face).
    """

    labels: NDArray[np.unsignedinteger]
    counts: NDArray[np.int64]
    crossing: tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]


def label_block(edges: Sequence[NDArray[np.bool_]], open_faces: Sequence[tuple[bool, bool]]) -> BlockLabels:
    """Components of a block's own edges (``edges`` as read at the block, no halo).

    ``open_faces[a]`` says whether the block has a neighbour below / above along axis ``a``.
    One-voxel components are background unless they lie on a plane facing a neighbour.
    """
    raw, n = label_graph(graph_from_edges(edges))
    counts = np.bincount(raw.ravel(), minlength=n + 1)  # cc3d's ids are 1..n
    keep = counts > 1
    for axis, (below, above) in enumerate(open_faces):
        for at, is_open in ((0, below), (-1, above)):
            if is_open:
                index: list[slice | int] = [slice(None)] * 3
                index[axis] = at
                keep[raw[tuple(index)]] = True
    keep[0] = False
    n_kept = int(keep.sum())
    if n_kept >= 2**32:  # pragma: no cover - more ids than voxels in any block
        raise OverflowError("2**32 or more objects in one block")
    dtype = np.uint16 if n_kept < 2**16 else np.uint32
    table: NDArray[np.unsignedinteger] = (np.cumsum(keep) * keep).astype(dtype)
    crossing = tuple(plane(edge, axis, 0) for axis, edge in enumerate(edges))
    z, y, x = crossing
    labels: NDArray[np.unsignedinteger] = np.take(table, raw)  # faster than table[raw] here
    return BlockLabels(labels, counts[keep].astype(np.int64), (z, y, x))


def connected_components(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], threshold: float
) -> NDArray[np.uint32]:
    """Labels of the components of the thresholded graph; voxels without any edge are 0.

    A voxel none of whose six edges exceeds the threshold is background (a boundary voxel),
    not a one-voxel object. Labels are positive but not necessarily consecutive.
    """
    graph = affinity_graph(affinities, offsets, threshold)
    labels, _ = label_graph(graph)
    linked = graph != 0  # has an edge to its lower neighbour along some axis
    for axis, bit in enumerate(MINUS_BIT):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        linked[tuple(lower)] |= (graph[tuple(upper)] & bit) != 0  # ... or from its upper neighbour
    labels[~linked] = 0
    return labels
