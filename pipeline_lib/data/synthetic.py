"""A deterministic EM-like demo volume with dense instance labels.

Cells are a multiplicatively weighted Voronoi tessellation (so sizes vary and borders curve)
of a smoothly warped space (so shapes wiggle). Voxels on cell borders get label 0 and a dark
membrane intensity; cell interiors get their own grey level with a few dark vesicle-like
specks, then the image is blurred, drifts in brightness along z and gets Gaussian noise.
The same ``(shape, seed, cell_size, noise)`` always gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

MIN_CELL_VOXELS = 30


@dataclass(frozen=True)
class SyntheticVolume:
    image: NDArray[np.uint8]
    labels: NDArray[np.uint32]


def _warped_coordinates(shape: tuple[int, int, int], rng: np.random.Generator, strength: float) -> NDArray[np.float32]:
    """Voxel coordinates (3, z, y, x) displaced by a smooth random field."""
    coords = np.indices(shape, dtype=np.float32)
    for axis in range(3):
        field = rng.standard_normal(shape).astype(np.float32)
        field = ndimage.gaussian_filter(field, sigma=6.0)
        field *= strength / (field.std() + 1e-6)
        coords[axis] += field
    return coords


def _weighted_voronoi(
    coords: NDArray[np.float32], seeds: NDArray[np.float32], weights: NDArray[np.float32]
) -> NDArray[np.uint32]:
    """Label (1-based) of the seed minimising distance / weight, computed slice by slice."""
    shape = coords.shape[1:]
    labels = np.empty(shape, dtype=np.uint32)
    for z in range(shape[0]):
        points = coords[:, z].reshape(3, -1).T  # (n, 3)
        best = np.full(points.shape[0], np.inf, dtype=np.float32)
        arg = np.zeros(points.shape[0], dtype=np.uint32)
        for i, (seed, weight) in enumerate(zip(seeds, weights, strict=True)):
            d = np.sqrt(((points - seed) ** 2).sum(axis=1)) / weight
            closer = d < best
            best[closer] = d[closer]
            arg[closer] = i + 1
        labels[z] = arg.reshape(shape[1:])
    return labels


def _membranes(labels: NDArray[np.uint32]) -> NDArray[np.bool_]:
    """Voxels whose lower neighbour along any axis has a different label (a one-voxel border)."""
    border = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        differs = labels[tuple(lo)] != labels[tuple(hi)]
        border[tuple(hi)] |= differs
    return border


def generate(shape: tuple[int, int, int], seed: int, cell_size: float = 20.0, noise: float = 0.08) -> SyntheticVolume:
    """The demo volume of ``shape`` (z, y, x): ``image`` uint8 and ``labels`` uint32 (0 = membrane)."""
    rng = np.random.default_rng(seed)
    volume = float(np.prod(shape))
    n_cells = max(2, int(round(volume / (cell_size**3 * 0.6))))
    margin = np.array([cell_size / 2] * 3, dtype=np.float32)
    seeds = rng.uniform(-margin, np.array(shape, dtype=np.float32) + margin, size=(n_cells, 3)).astype(np.float32)
    weights = rng.lognormal(mean=0.0, sigma=0.3, size=n_cells).astype(np.float32)

    coords = _warped_coordinates(shape, rng, strength=cell_size * 0.25)
    cells = _weighted_voronoi(coords, seeds, weights)
    # Relabel connected pieces so every label is one connected object.
    cells = cc3d.connected_components(cells, connectivity=6).astype(np.uint32)
    membrane = _membranes(cells)
    labels = np.where(membrane, 0, cells).astype(np.uint32)
    # Fragments too small to be cells become membrane, and labels become consecutive.
    labels = cc3d.dust(labels, threshold=MIN_CELL_VOXELS, connectivity=6)
    labels, _ = fastremap.renumber(labels, in_place=True)
    labels = labels.astype(np.uint32)
    membrane = labels == 0

    grey = rng.uniform(0.55, 0.85, size=int(cells.max()) + 1).astype(np.float32)
    image = grey[cells]
    specks = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
    image -= 0.25 * (specks > 2.0 * specks.std())
    image[membrane] = 0.15
    image = ndimage.gaussian_filter(image, sigma=0.8)
    image *= np.linspace(0.9, 1.1, shape[0], dtype=np.float32)[:, None, None]
    image += rng.normal(0.0, noise, size=shape).astype(np.float32)
    image_u8 = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return SyntheticVolume(image=image_u8, labels=labels)
