"""Training patches sampled lazily from assembled zarr volumes.

Each worker opens the zarr arrays itself and reads only the crop it needs, so no process
ever holds a whole volume. A patch is augmented (labels with the image, before targets are
computed, so no new ids can appear), then turned into affinities and their mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import has_array, normalize_image, open_array
from pipeline_lib.targets import affinities

Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PatchSpec:
    """What a patch contains: its shape (z, y, x) and the affinity offsets of the target."""

    shape: tuple[int, int, int]
    offsets: tuple[tuple[int, int, int], ...]


class _Volume:
    """Lazy handles on one assembled volume's image, labels and optional mask."""

    def __init__(self, store: str | Path, patch_shape: Sequence[int]) -> None:
        self.store = Path(store)
        self.image = open_array(store, "image")
        self.labels = open_array(store, "labels")
        self.mask = open_array(store, "mask") if has_array(store, "mask") else None
        if any(p > s for p, s in zip(patch_shape, self.image.shape, strict=True)):
            raise UserError(
                f"{store}: patch shape {tuple(patch_shape)} is larger than the volume {tuple(self.image.shape)}"
            )

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.image.shape))

    def crop(self, corner: Sequence[int], shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        region = tuple(slice(c, c + s) for c, s in zip(corner, shape, strict=True))
        image = normalize_image(np.asarray(self.image[region]))
        labels = np.asarray(self.labels[region])
        mask = np.asarray(self.mask[region]) > 0 if self.mask is not None else np.ones(labels.shape, dtype=bool)
        return image, labels, mask


def _augment(rng: np.random.Generator, arrays: list[np.ndarray], flip_p: float) -> list[np.ndarray]:
    """The same random flips (each axis) and y–x transpose applied to all arrays."""
    for axis in range(3):
        if rng.random() < flip_p:
            arrays = [np.flip(a, axis=axis) for a in arrays]
    if arrays[0].shape[1] == arrays[0].shape[2] and rng.random() < 0.5:
        arrays = [np.swapaxes(a, 1, 2) for a in arrays]
    return [np.ascontiguousarray(a) for a in arrays]


def make_sample(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, spec: PatchSpec) -> Sample:
    """Tensors ``image (1, z, y, x)``, ``target`` and ``weight`` ``(c, z, y, x)``."""
    target, valid = affinities(labels, spec.offsets)
    valid *= mask[None].astype(np.float32)
    return {
        "image": torch.from_numpy(image[None].copy()),
        "target": torch.from_numpy(target),
        "weight": torch.from_numpy(valid),
    }


class RandomPatches(IterableDataset[Sample]):
    """An endless stream of random, augmented patches from several volumes.

    Volumes are drawn with probability proportional to their size. ``seed`` and the worker id
    fix the stream, so a run is reproducible.
    """

    def __init__(self, stores: Sequence[str | Path], spec: PatchSpec, seed: int, flip_p: float) -> None:
        if not stores:
            raise UserError("no training volumes: select a dataset with role 'train'")
        self.stores = [Path(s) for s in stores]
        self.spec = spec
        self.seed = seed
        self.flip_p = flip_p
        # Open once here to fail early on shape errors; workers reopen lazily.
        sizes = [_Volume(s, spec.shape).n_voxels for s in self.stores]
        self.weights = np.array(sizes, dtype=float) / sum(sizes)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        volumes = [_Volume(s, self.spec.shape) for s in self.stores]
        while True:
            volume = volumes[rng.choice(len(volumes), p=self.weights)]
            corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(volume.image.shape, self.spec.shape, strict=True)]
            image, labels, mask = volume.crop(corner, self.spec.shape)
            image, labels, mask = _augment(rng, [image, labels, mask], self.flip_p)
            yield make_sample(image, labels, mask, self.spec)


class FixedPatches(Dataset[Sample]):
    """``n`` patches at fixed random positions (the same every validation run), unaugmented."""

    def __init__(self, stores: Sequence[str | Path], spec: PatchSpec, n: int, seed: int) -> None:
        self.spec = spec
        rng = np.random.default_rng(seed)
        volumes = [_Volume(s, spec.shape) for s in stores]
        self.items: list[tuple[_Volume, list[int]]] = []
        for i in range(n):
            volume = volumes[i % len(volumes)]
            corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(volume.image.shape, spec.shape, strict=True)]
            self.items.append((volume, corner))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        volume, corner = self.items[index]
        return make_sample(*volume.crop(corner, self.spec.shape), self.spec)
