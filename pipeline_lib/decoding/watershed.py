"""Seeded watershed on the boundary map derived from nearest-neighbour affinities.

Edge convention (docs/conventions.md): the value of the channel with offset ``-e_a`` at voxel
``v`` is the affinity of the edge ``v — v - e_a``. The *mean affinity* of a voxel averages
the (up to six) nearest-neighbour edges that touch it: the three stored at ``v`` and the
three stored at ``v + e_a``; edges leaving the array are left out.

Seeds are the connected components of the graph whose vertices are voxels with mean affinity
above ``threshold`` and whose edges are nearest-neighbour edges with affinity above
``threshold`` (so two objects that touch without a boundary voxel between them still give
two seeds). Seeds smaller than ``seed_min_size`` are dropped. scikit-image's watershed then
floods ``1 - mean affinity`` (optionally Gaussian-smoothed) from the seeds; every voxel
reachable from a seed gets its label, so boundary voxels join a neighbouring object.
"""

from __future__ import annotations

from collections.abc import Sequence

import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter
from skimage.segmentation import watershed

from pipeline_lib.decoding.connected_components import graph_from_edges, label_graph
from pipeline_lib.offsets import nearest_neighbour_channels


def mean_affinity(affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]]) -> NDArray[np.float32]:
    """Mean of the nearest-neighbour edge affinities touching each voxel (see module docstring)."""
    shape = affinities.shape[1:]
    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    for axis, channel in enumerate(nearest_neighbour_channels(offsets)):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        edge = affinities[channel][tuple(upper)]  # edge v — v - e_a, for v with v - e_a inside
        total[tuple(upper)] += edge
        total[tuple(lower)] += edge
        count[tuple(upper)] += 1
        count[tuple(lower)] += 1
    return (total / np.maximum(count, 1)).astype(np.float32, copy=False)


def seeds(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], threshold: float, seed_min_size: int
) -> NDArray[np.uint32]:
    """Seed labels 1..n (0 elsewhere); see the module docstring."""
    inside = mean_affinity(affinities, offsets) > threshold
    edges = []
    for axis, channel in enumerate(nearest_neighbour_channels(offsets)):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        below_inside = np.zeros_like(inside)  # inside[v - e_a] at v
        below_inside[tuple(upper)] = inside[tuple(lower)]
        edges.append((affinities[channel] > threshold) & inside & below_inside)
    labels, _ = label_graph(graph_from_edges(edges))
    labels[~inside] = 0
    ids, counts = fastremap.unique(labels, return_counts=True)
    small = ids[(counts < seed_min_size) & (ids != 0)]
    if len(small):
        labels = fastremap.mask(labels, small.tolist())
    relabelled, _ = fastremap.renumber(labels, preserve_zero=True, in_place=True)
    return relabelled.astype(np.uint32, copy=False)


def seeded_watershed(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    threshold: float,
    seed_min_size: int,
    sigma: float,
) -> NDArray[np.uint32]:
    """Watershed of ``1 - mean affinity`` from :func:`seeds`; all zeros when there is no seed."""
    markers = seeds(affinities, offsets, threshold, seed_min_size)
    if not markers.any():
        return markers
    boundary = 1.0 - mean_affinity(affinities, offsets)
    if sigma > 0:
        boundary = gaussian_filter(boundary, sigma)
    labels: NDArray[np.uint32] = watershed(boundary, markers=markers).astype(np.uint32, copy=False)
    return labels


__all__ = ["mean_affinity", "seeded_watershed", "seeds"]
