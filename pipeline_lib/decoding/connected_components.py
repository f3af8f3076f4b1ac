"""Connected components of the thresholded nearest-neighbour affinity graph (with ``cc3d``).

Two voxels ``v`` and ``v - e_a`` are joined when the affinity stored at ``v`` in the
channel with offset ``-e_a`` exceeds the threshold (the convention of ``DESIGN.md``).
Voxels joined to no neighbour are background (0). Blockwise, a block is decoded with a
one-voxel halo so that this is decided with all six edges of every voxel; any path through
the halo is a real path of the whole graph, so the stitched result stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.errors import ConfigError

# cc3d's 6-connectivity graph bit that links voxel v to v - e_a, for numpy axis a.
MINUS_BIT = (2, 8, 32)


def nearest_neighbour_channels(offsets: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Indices of the channels with offsets (-1,0,0), (0,-1,0), (0,0,-1)."""
    channels = []
    for axis in range(3):
        unit = tuple(-1 if a == axis else 0 for a in range(3))
        found = [k for k, o in enumerate(offsets) if tuple(o) == unit]
        if not found:
            raise ConfigError(
                f"decoding needs the nearest-neighbour affinity {list(unit)}; "
                f"model offsets are {[list(o) for o in offsets]}"
            )
        channels.append(found[0])
    z, y, x = channels
    return (z, y, x)


def affinity_graph(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], threshold: float, cut_faces: bool = True
) -> NDArray[np.uint8]:
    """cc3d voxel-connectivity graph with an edge wherever the affinity exceeds ``threshold``.

    With ``cut_faces`` the edges from the first plane of each axis (which point outside the
    array) are left out, so a block's graph holds only its own edges.
    """
    graph = np.zeros(affinities.shape[1:], dtype=np.uint8)
    for axis, channel in enumerate(nearest_neighbour_channels(offsets)):
        edges = affinities[channel] > threshold
        if cut_faces:
            first = [slice(None)] * 3
            first[axis] = slice(0, 1)
            edges[tuple(first)] = False
        graph |= edges.astype(np.uint8) * MINUS_BIT[axis]
    return graph


def connected_components(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], threshold: float
) -> NDArray[np.uint32]:
    """Labels of the components of the thresholded graph; voxels without any edge are 0.

    A voxel none of whose six edges exceeds the threshold is background (a boundary voxel),
    not a one-voxel object. Labels are positive but not necessarily consecutive.
    """
    graph = affinity_graph(affinities, offsets, threshold)
    labels: NDArray[np.uint32] = cc3d.color_connectivity_graph(graph, connectivity=6)  # type: ignore[call-overload]
    linked = graph != 0  # has an edge to its lower neighbour along some axis
    for axis, bit in enumerate(MINUS_BIT):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        linked[tuple(lower)] |= (graph[tuple(upper)] & bit) != 0  # ... or from its upper neighbour
    labels[~linked] = 0
    return labels
