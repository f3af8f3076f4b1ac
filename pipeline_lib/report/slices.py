"""Which 2-D planes of a volume a figure shows, reading only those planes, and label colours.

A figure shows a few z-slices (xy planes) spread through the volume and one orthogonal
slice (the zx plane through the middle of y). Volumes can be huge, so each plane is read
as a central window of at most ``max_extent`` voxels per side, at full resolution::

        x ─────────────▶
      y ┌──────────────┐
        │   ┌──────┐   │      window: the central max_extent × max_extent voxels
        │   │ read │   │      (the whole plane when it is smaller)
        │   └──────┘   │
        └──────────────┘

Only the chunks a window touches are read from the zarr stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

N_Z_SLICES = 3
MAX_EXTENT = 768  # voxels per side of a plane's window


@dataclass(frozen=True)
class Plane:
    """A plane of a (z, y, x) volume: ``axis`` 0 is an xy plane at z = ``index``, 1 a zx
    plane at y = ``index``; ``window`` the in-plane (begin, end) ranges read."""

    axis: int
    index: int
    window: tuple[tuple[int, int], tuple[int, int]]

    @property
    def title(self) -> str:
        return f"{'zy'[self.axis]} = {self.index}"

    @property
    def slices(self) -> tuple[int | slice, ...]:
        """Index of the plane's window in a (z, y, x) array."""
        (a0, a1), (b0, b1) = self.window
        if self.axis == 0:
            return (self.index, slice(a0, a1), slice(b0, b1))
        return (slice(a0, a1), self.index, slice(b0, b1))


def _central(size: int, max_extent: int) -> tuple[int, int]:
    extent = min(size, max_extent)
    begin = (size - extent) // 2
    return (begin, begin + extent)


def choose_planes(shape: tuple[int, ...], n_z: int = N_Z_SLICES, max_extent: int = MAX_EXTENT) -> list[Plane]:
    """``n_z`` xy planes evenly inside the volume (z, y, x) plus the zx plane at the middle y."""
    nz, ny, nx = shape[-3:]
    zs = sorted({int(z) for z in np.linspace(0, nz, n_z + 2)[1:-1].round().clip(0, nz - 1)})
    planes = [Plane(0, z, (_central(ny, max_extent), _central(nx, max_extent))) for z in zs]
    planes.append(Plane(1, ny // 2, (_central(nz, max_extent), _central(nx, max_extent))))
    return planes


def read_plane(array: Any, plane: Plane, channel: int | None = None) -> NDArray[Any]:
    """The window of ``plane`` from a (z, y, x) array, or channel ``channel`` of a (c, z, y, x) one."""
    index = plane.slices if channel is None else (channel, *plane.slices)
    return np.asarray(array[index])


def label_colours(labels: NDArray[Any], alpha: float = 0.5) -> NDArray[np.float32]:
    """RGBA image of ``labels``: a pseudo-random colour per label id (the same id gets the
    same colour in every figure), label 0 fully transparent."""
    ids = labels.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (ids + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    rgba = np.empty(labels.shape + (4,), dtype=np.float32)
    for k, shift in enumerate((0, 8, 16)):
        rgba[..., k] = 0.25 + 0.75 * ((h >> np.uint64(shift)) & np.uint64(255)).astype(np.float32) / 255.0
    rgba[..., 3] = np.where(labels == 0, 0.0, alpha)
    return rgba


__all__ = ["MAX_EXTENT", "N_Z_SLICES", "Plane", "choose_planes", "label_colours", "read_plane"]
