"""Training targets computed from instance labels.

Affinity convention (see ``DESIGN.md``): channel ``k`` has offset ``o_k = (dz, dy, dx)``
with entries ≤ 0; the value at voxel ``v`` describes the edge between ``v`` and ``v + o_k``.
It is 1 when both voxels carry the same non-zero label, else 0, and it is *undefined*
(mask 0) where ``v + o_k`` lies outside the volume. For labels ``[1, 1, 2]`` along x and
offset ``(0, 0, -1)`` the affinity is ``[0, 1, 0]`` with mask ``[0, 1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def _edge_slices(offset: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices (at v, at v + o) covering every voxel v whose partner v + o is inside."""
    here, there = [], []
    for o in offset:
        if o > 0:
            raise ValueError(f"affinity offsets must not have positive entries, got {tuple(offset)}")
        here.append(slice(-o, None))
        there.append(slice(None, o if o else None))
    return tuple(here), tuple(there)


def affinities(
    labels: NDArray[np.integer], offsets: Sequence[Sequence[int]]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Affinities ``(len(offsets), *labels.shape)`` and their validity mask, both float32."""
    shape = (len(offsets), *labels.shape)
    aff = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.float32)
    for k, offset in enumerate(offsets):
        here, there = _edge_slices(offset)
        a, b = labels[here], labels[there]
        aff[(k, *here)] = (a == b) & (a != 0)
        mask[(k, *here)] = 1.0
    return aff, mask


def max_offset(offsets: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """The largest absolute offset per axis: the context an edge reaches back."""
    z, y, x = (max(abs(int(o[axis])) for o in offsets) for axis in range(3))
    return (z, y, x)
