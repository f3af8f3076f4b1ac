"""Graph decoders (waterz-style agglomeration, mutex watershed, seeded watershed): fragments → region graph → segments.

The three steps, on a whole array (:func:`decode_graph`, :func:`graph_segmentations`) or
blockwise (the ``"graph"`` stitch of :mod:`~pipeline_lib.decoding.blockwise`):

1. per block, :func:`block_fragments`: fragments
   (:func:`~pipeline_lib.decoding.fragments.fragments`) of the block grown by the context
   ``params.halo``, the block's own region kept with block-local ids ``1..n``;
   :func:`graph_record`: the contacts among them and the face planes for the contacts
   across the block's lower faces (:mod:`~pipeline_lib.decoding.region_graph`);
2. one job, :func:`build_graph`: fragment ``j`` of block ``i`` becomes node
   ``starts[i] + j - 1``, and the edge tables of all blocks and faces are summed into one
   :class:`~pipeline_lib.decoding.graph_agglomeration.RegionGraph`;
   :func:`segment_nodes` agglomerates it once (hierarchical merging for ``waterz``, mutex
   watershed for ``mutex_watershed``, a seeded flood for ``seeded_watershed``, whose blocks
   also record each fragment's seed voxels at the threshold, :func:`seed_voxel_counts`);
3. block jobs write each block's final ids through the node → segment table (the
   relabel step shared with connected components).

Small objects (``min_size``) are handled on the segments' global sizes, and merged by
the contact counts of the graph's nearest edges (voxel faces between fragments, so between
segments) and each fragment's first voxel, the rule of
:mod:`~pipeline_lib.decoding.postprocess`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding.fragments import fragments
from pipeline_lib.decoding.graph_agglomeration import RegionGraph, cuts, merge_history, mutex_segments, seeded_segments
from pipeline_lib.decoding.region_graph import EdgeTable, as_uint8, block_edges, combine, face_depth, face_edges
from pipeline_lib.decoding.stitching import final_labels, lower_neighbour, small_components, small_object_record
from pipeline_lib.decoding.watershed import mean_affinity
from pipeline_lib.geometry import BlockGrid

GRAPH_METHODS = ("waterz", "mutex_watershed", "seeded_watershed")
Seeds = Callable[[float], tuple[NDArray[np.int64], EdgeTable]]
TABLES = ("nearest", "long")


def block_fragments(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    core: tuple[slice, ...],
    decoder: DecoderSettings,
) -> tuple[NDArray[np.uint32], NDArray[np.int64]]:
    """Fragments of a context (floats) kept inside ``core``: local ids ``1..n`` and voxel counts."""
    p = decoder.params
    labels = fragments(affinities, offsets, p["boundary_threshold"], p["min_seed_distance"], p["distance_cap"])
    own, _ = fastremap.renumber(np.ascontiguousarray(labels[core]), preserve_zero=True, in_place=True)
    own = own.astype(np.uint32, copy=False)
    counts = np.bincount(own.ravel())[1:].astype(np.int64)
    return own, counts


def seed_record(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    labels: NDArray[np.uint32],
    core: tuple[slice, ...],
    threshold: float,
    grid: BlockGrid,
    block_id: int,
) -> dict[str, NDArray[Any]]:
    """What a seeded-watershed block records besides its graph (keys ``seed_*``).

    ``affinities``: the context's floats (nearest channels), ``labels``: the core's fragments.
    Seed voxels are those whose mean affinity exceeds ``threshold`` (computed on the whole
    context, so equal to the whole-volume one wherever the context reaches one voxel beyond
    the core); ``seed_voxels`` counts them per fragment, and the ``seed_nearest`` edges (with
    their face data, as :func:`graph_record`) sum, per pair of fragments, the contacts whose
    two voxels are seed voxels and whose affinity exceeds ``threshold``.
    """
    seed = mean_affinity(affinities, offsets)[core] > threshold
    seed_labels = np.where(seed, labels, np.uint32(0))
    above = (affinities[(slice(None), *core)] > threshold).astype(np.uint8)
    record = graph_record(seed_labels, above, offsets, grid, block_id, False)
    record.pop("offsets")
    counts = np.bincount(seed_labels.ravel(), minlength=int(labels.max(initial=0)) + 1)[1:].astype(np.int64)
    return {"seed_voxels": counts, **{f"seed_{key}": value for key, value in record.items()}}


def _face(array: NDArray[Any], axis: int, depth: int, last: bool) -> NDArray[Any]:
    index = [slice(None)] * array.ndim
    index[axis] = slice(array.shape[axis] - depth, None) if last else slice(0, depth)
    return np.ascontiguousarray(array[tuple(index)])


def graph_record(
    labels: NDArray[np.uint32],
    stored: NDArray[Any],
    offsets: Sequence[Sequence[int]],
    grid: BlockGrid,
    block_id: int,
    merge_small: bool,
) -> dict[str, NDArray[Any]]:
    """What block ``block_id`` records for the graph (its own region only; ``stored``: all channels there)."""
    affinities = as_uint8(stored)
    nearest, long_range = block_edges(labels, affinities, offsets)
    record = {**nearest.save("nearest"), **long_range.save("long"), "offsets": np.asarray(offsets, dtype=np.int64)}
    block = grid.block(block_id)
    for axis in range(3):
        depth = min(face_depth(offsets, axis), block.shape[axis])
        if block.begin[axis] > 0:
            record[f"first{axis}"] = _face(labels, axis, depth, last=False)
            record[f"aff{axis}"] = _face(affinities, axis + 1, depth, last=False)
        if block.end[axis] < grid.shape[axis]:
            record[f"last{axis}"] = _face(labels, axis, depth, last=True)
    if merge_small:
        record["first_voxel"] = small_object_record(labels, grid, block_id, int(labels.max(initial=0)))["first_voxel"]
    return record


def _nodes(local: NDArray[np.integer], start: int) -> NDArray[np.int64]:
    """Block-local ids as 1-based node ids (``start + local``; 0 stays 0)."""
    local = local.astype(np.int64)
    return np.where(local > 0, local + start, 0)


def build_graph(
    grid: BlockGrid,
    offsets: Sequence[Sequence[int]],
    counts: Sequence[NDArray[np.int64]],
    record: Callable[[int], Any],
    prefix: str = "",
) -> tuple[RegionGraph, NDArray[np.int64]]:
    """The global graph from every block's record and where each block's nodes begin.

    ``record(i)`` opens block ``i``'s record (a context manager such as ``np.load``);
    ``prefix``: that of the record's keys (``"seed_"``: the seed contacts of :func:`seed_record`).
    """
    starts = np.cumsum([0] + [len(c) for c in counts]).astype(np.int64)
    tables: dict[str, list[EdgeTable]] = {name: [] for name in TABLES}
    ends: dict[str, list[tuple[NDArray[np.int64], NDArray[np.int64]]]] = {name: [] for name in TABLES}
    for block_id in range(len(grid)):
        start = int(starts[block_id])
        with record(block_id) as here:
            for name in TABLES:
                table = EdgeTable.load(here, prefix + name)
                tables[name].append(table)
                ends[name].append((table.u + start - 1, table.v + start - 1))
            for axis in range(3):
                below = lower_neighbour(grid, block_id, axis)
                if below is None:
                    continue
                with record(below) as there:
                    last = _nodes(there[f"{prefix}last{axis}"], int(starts[below]))
                first = _nodes(here[f"{prefix}first{axis}"], start)
                faces = face_edges(first, here[f"{prefix}aff{axis}"], last, offsets, axis)
                for name, table in zip(TABLES, faces, strict=True):
                    tables[name].append(table)
                    ends[name].append((table.u - 1, table.v - 1))
    sizes = np.concatenate([np.zeros(0, dtype=np.int64), *counts])
    nearest, long_range = (combine(tables[name], ends[name]) for name in TABLES)
    return RegionGraph(sizes, nearest, long_range), starts


def segment_nodes(
    graph: RegionGraph, decoder: DecoderSettings, thresholds: Sequence[float], seeds: Seeds | None = None
) -> Iterator[tuple[float, NDArray[np.int64]]]:
    """``(threshold, segment index of every node)`` for each threshold (one agglomeration for waterz).

    ``seeds(t)``: every node's seed voxels and the seed contacts at ``t`` (seeded watershed only).
    """
    p = decoder.params
    if decoder.method == "seeded_watershed":
        if seeds is None:
            raise ValueError("seeded watershed needs the fragments' seed voxels")
        for threshold in thresholds:
            t = float(threshold)
            seed_voxels, seed_edges = seeds(t)
            yield t, seeded_segments(graph, seed_voxels, seed_edges, p["seed_min_size"])
        return
    if decoder.method == "waterz":
        history = merge_history(graph, p["merge_function"], stop=min(thresholds))
        yield from cuts(history, thresholds).items()
        return
    for threshold in thresholds:
        yield float(threshold), mutex_segments(graph, float(threshold), p["long_range_bias"])


def final_table(
    graph: RegionGraph,
    segment: NDArray[np.int64],
    decoder: DecoderSettings,
    first_voxels: NDArray[np.int64] | None = None,
) -> NDArray[np.uint64]:
    """Final consecutive id (1..) of every node, small segments handled per ``decoder``."""
    n_segments = int(segment.max(initial=-1)) + 1
    sizes = np.bincount(segment, weights=graph.sizes, minlength=n_segments).astype(np.int64)
    small: dict[int, int] = {}
    if decoder.min_size > 1 and (sizes < decoder.min_size).any():
        su, sv = segment[graph.nearest.u] + 1, segment[graph.nearest.v] + 1
        between = su != sv
        keys = np.minimum(su, sv)[between] * (n_segments + 1) + np.maximum(su, sv)[between]
        unique, inverse = np.unique(keys, return_inverse=True)
        contact_counts = np.bincount(inverse, weights=graph.nearest.count[between]).astype(np.int64)
        contact_pairs = np.stack(np.divmod(unique, n_segments + 1), axis=1).astype(np.uint64)
        first = None
        if first_voxels is not None:
            first = np.full(n_segments, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, segment, first_voxels)
        small = small_components(sizes, decoder.min_size, decoder.small_objects, contact_pairs, contact_counts, first)
    return final_labels(segment, sizes, small)


def whole_graph(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], decoder: DecoderSettings
) -> tuple[NDArray[np.uint32], RegionGraph]:
    """Fragments ``1..n`` and region graph (nodes ``0..n-1``) of a whole array (one block)."""
    shape = affinities.shape[1:]
    labels, counts = block_fragments(affinities, offsets, tuple(slice(None) for _ in shape), decoder)
    nearest, long_range = block_edges(labels, as_uint8(affinities), offsets)
    shifted = [combine([t], [(t.u - 1, t.v - 1)]) for t in (nearest, long_range)]
    return labels, RegionGraph(counts, shifted[0], shifted[1])


def graph_segmentations(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    decoder: DecoderSettings,
    thresholds: Sequence[float],
) -> Iterator[tuple[float, NDArray[np.uint64]]]:
    """``(threshold, labels 1..n)`` of a whole array for each threshold, small objects kept.

    Fragments and graph are computed once (and, for waterz, one merge history cut at every
    threshold), so a sweep costs little more than one decode.
    """
    labels, graph = whole_graph(affinities, offsets, decoder)
    seeds = None
    if decoder.method == "seeded_watershed":
        whole = tuple(slice(None) for _ in labels.shape)
        grid = BlockGrid(labels.shape, labels.shape)

        def seeds(t: float) -> tuple[NDArray[np.int64], EdgeTable]:
            record = seed_record(affinities, offsets, labels, whole, t, grid, 0)
            table = EdgeTable.load(record, "seed_nearest")
            return record["seed_voxels"], combine([table], [(table.u - 1, table.v - 1)])

    for threshold, segment in segment_nodes(graph, decoder, thresholds, seeds):
        lookup = np.concatenate([np.zeros(1, dtype=np.uint64), segment.astype(np.uint64) + 1])
        yield threshold, np.take(lookup, labels)


def decode_graph(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], decoder: DecoderSettings
) -> NDArray[np.uint64]:
    """One graph decoder on a whole array at ``decoder.threshold`` (small objects kept for the caller)."""
    ((_, labels),) = graph_segmentations(affinities, offsets, decoder, [decoder.threshold])
    return labels


__all__ = [
    "GRAPH_METHODS",
    "block_fragments",
    "build_graph",
    "decode_graph",
    "final_table",
    "graph_record",
    "graph_segmentations",
    "seed_record",
    "segment_nodes",
    "whole_graph",
]
