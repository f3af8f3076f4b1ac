"""The mean nearest-neighbour affinity of each voxel (fragments flood it; seeded watershed seeds by it).

Edge convention (docs/conventions.md): the value of the channel with offset ``-e_a`` at voxel
``v`` is the affinity of the edge ``v — v - e_a``. The *mean affinity* of a voxel averages
the (up to six) nearest-neighbour edges that touch it: the three stored at ``v`` and the
three stored at ``v + e_a``; edges leaving the array are left out. Seeded watershed itself
floods the region graph of fragments
(:func:`~pipeline_lib.decoding.graph_agglomeration.seeded_segments`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

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


__all__ = ["mean_affinity"]
