"""Training patches sampled lazily from assembled zarr volumes.

Each worker opens the zarr arrays itself and reads only the crop it needs, so no process
ever holds a whole volume. A crop is drawn (rejection sampling: up to ``max_attempts`` crops
until one has at least ``min_foreground`` labelled voxels, else the last one is kept), its
labels renumbered to small consecutive ids, augmented (labels with the image, before targets
are computed, so no new ids can appear; see :mod:`pipeline_lib.training.augment`), then
turned into the stacked targets and their loss weights.

:class:`PatchDataModule` is the Lightning side: the training stream and the fixed validation
patches of one model, and their DataLoaders.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from pipeline_lib.config.settings import AugmentSettings, ModelSettings, SamplingSettings
from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import has_array, normalize_image, open_array
from pipeline_lib.targets import compute_targets
from pipeline_lib.threads import limit_worker_threads
from pipeline_lib.training.augment import augment_patch, build_augment

Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PatchSpec:
    """What a patch contains: its shape (z, y, x) and its targets (types in channel order)."""

    shape: tuple[int, int, int]
    offsets: tuple[tuple[int, int, int], ...]
    targets: tuple[str, ...] = ("affinity",)
    distance_scale: float = 5.0
    lsd_sigma: float = 5.0
    lsd_downsample: int = 2
    ignore_zero: bool = False


class _Volume:
    """Lazy handles on one assembled volume's image, labels and optional mask (or, after
    :meth:`load`, the arrays in memory)."""

    def __init__(self, store: str | Path, patch_shape: Sequence[int]) -> None:
        self.store = Path(store)
        self.image: Any = open_array(store, "image")
        self.labels: Any = open_array(store, "labels")
        self.mask: Any = open_array(store, "mask") if has_array(store, "mask") else None
        if any(p > s for p, s in zip(patch_shape, self.image.shape, strict=True)):
            raise UserError(
                f"{store}: patch shape {tuple(patch_shape)} is larger than the volume {tuple(self.image.shape)}"
            )

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.image.shape))

    @property
    def n_bytes(self) -> int:
        arrays = [a for a in (self.image, self.labels, self.mask) if a is not None]
        return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in arrays)

    def load(self) -> _Volume:
        """Read the arrays into memory once (crops become slices instead of chunk reads)."""
        self.image, self.labels = np.asarray(self.image[...]), np.asarray(self.labels[...])
        self.mask = np.asarray(self.mask[...]) if self.mask is not None else None
        return self

    def crop(self, corner: Sequence[int], shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        region = tuple(slice(c, c + s) for c, s in zip(corner, shape, strict=True))
        image = normalize_image(np.asarray(self.image[region]))
        labels = np.asarray(self.labels[region])
        mask = np.asarray(self.mask[region]) > 0 if self.mask is not None else np.ones(labels.shape, dtype=bool)
        return image, labels, mask


def renumber(labels: np.ndarray) -> np.ndarray:
    """Labels as int32 ids below 2**24 (exact in float32), 0 kept as 0.

    Ids already below 2**24 are kept; otherwise they are mapped to consecutive ids (targets
    depend on label equality only).
    """
    if labels.size and int(labels.max()) < 2**24:
        return labels.astype(np.int32)
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32)


def make_sample(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, spec: PatchSpec) -> Sample:
    """Tensors ``image (1, z, y, x)``, ``target`` and ``weight`` ``(c, z, y, x)``."""
    target, valid = compute_targets(
        labels,
        mask,
        spec.targets,
        spec.offsets,
        spec.distance_scale,
        spec.lsd_sigma,
        spec.lsd_downsample,
        spec.ignore_zero,
    )
    return {
        "image": torch.from_numpy(image[None].copy()),
        "target": torch.from_numpy(target),
        "weight": torch.from_numpy(valid),
    }


def raw_sample(image: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> Sample:
    """Tensors ``image`` float32, ``labels`` int32 and ``mask`` bool, each ``(1, z, y, x)``, without
    targets (they are computed on the device, :mod:`pipeline_lib.training.batch_augment`)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image[None])),
        "labels": torch.from_numpy(labels[None].astype(np.int32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask[None])),
    }


class RandomPatches(IterableDataset[Sample]):
    """An endless stream of random, augmented patches from several volumes.

    Volumes are drawn with probability proportional to ``volume_weights``, by default to
    their size. The stream is a function of ``seed`` and the batch index alone: batch ``b``
    (``batch_size`` patches, the DataLoader's batch size) is drawn from a generator seeded with
    ``(seed, b)``, and with ``n`` DataLoader workers worker ``w`` makes batches ``w, w + n, …``,
    the order in which the DataLoader takes them. So the batches are the same for any number of
    workers, and a resumed run that sets :attr:`start_batch` to the number of batches already
    trained on continues exactly the stream an uninterrupted run would see. With ``raw`` the
    samples are ``{"image", "labels" (int32), "mask" (bool)}`` without targets, for
    :class:`~pipeline_lib.training.batch_augment.BatchAugment` (pass ``augment`` without the
    batched augmentations then). Volumes that fit ``sampling.cache_mb`` are read into memory
    here, before the workers start (forked workers share them).
    """

    def __init__(
        self,
        stores: Sequence[str | Path],
        spec: PatchSpec,
        seed: int,
        augment: AugmentSettings,
        sampling: SamplingSettings,
        volume_weights: Sequence[float] | None = None,
        batch_size: int = 1,
        raw: bool = False,
    ) -> None:
        if not stores:
            raise UserError("no training volumes: select a dataset with role 'train'")
        self.stores = [Path(s) for s in stores]
        self.spec = spec
        self.seed = seed
        self.augment = augment
        self.sampling = sampling
        self.batch_size = batch_size
        self.start_batch = 0  # the first batch of the stream (a resumed run sets it)
        self.raw = raw
        # Open once here to fail early on shape errors; workers reopen lazily unless the
        # volumes fit the cache: then they are read now and shared with forked workers.
        opened = [_Volume(s, spec.shape) for s in self.stores]
        sizes = [float(v.n_voxels) for v in opened]
        fits = sum(v.n_bytes for v in opened) <= sampling.cache_mb * 10**6
        self.cached = [v.load() for v in opened] if fits else None
        if volume_weights is not None:
            if len(volume_weights) != len(self.stores) or min(volume_weights) < 0 or sum(volume_weights) <= 0:
                raise UserError(
                    f"volume weights {list(volume_weights)} must be one non-negative number per "
                    f"training volume ({len(self.stores)}), not all 0"
                )
            sizes = [float(w) for w in volume_weights]
        self.weights = np.array(sizes, dtype=float) / sum(sizes)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pipeline = build_augment(self.augment, self.spec.shape)
        volumes = self.cached or [_Volume(s, self.spec.shape) for s in self.stores]
        for batch in itertools.count(self.start_batch + worker, workers):
            rng = np.random.default_rng([self.seed, batch])
            pipeline.set_random_state(seed=int(rng.integers(2**31)))
            for _ in range(self.batch_size):
                image, labels, mask = self._draw(rng, volumes)
                image, labels, mask = augment_patch(pipeline, image, renumber(labels), mask)
                yield raw_sample(image, labels, mask) if self.raw else make_sample(image, labels, mask, self.spec)

    def _draw(self, rng: np.random.Generator, volumes: list[_Volume]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A crop with enough foreground, or the last of ``max_attempts`` tries."""
        for _ in range(self.sampling.max_attempts):
            volume = volumes[rng.choice(len(volumes), p=self.weights)]
            corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(volume.image.shape, self.spec.shape, strict=True)]
            image, labels, mask = volume.crop(corner, self.spec.shape)
            if np.count_nonzero(labels) >= self.sampling.min_foreground * labels.size:
                break
        return image, labels, mask


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


class PatchDataModule(L.LightningDataModule):
    """The patch datasets of one model: :class:`RandomPatches` from ``train_stores`` (seed
    ``settings.seed``, augmented with ``augment``; ``raw`` samples for batch augmentation) and,
    when there are ``val_stores``, ``val_batches`` batches of :class:`FixedPatches` (seed
    ``settings.seed + 1``).

    :meth:`setup` builds them once (a later call keeps them); :meth:`start_at` makes the
    training stream start at a later batch (a resumed run). The training loader runs
    ``workers`` worker processes on one thread each, and its shuffling generator is its own,
    seeded with ``settings.seed``, so the global random state is left alone.
    """

    def __init__(
        self,
        train_stores: Sequence[str | Path],
        val_stores: Sequence[str | Path],
        spec: PatchSpec,
        settings: ModelSettings,
        augment: AugmentSettings,
        workers: int,
        raw: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.train_stores, self.val_stores = list(train_stores), list(val_stores)
        self.spec, self.settings, self.augment = spec, settings, augment
        self.workers, self.raw, self.pin_memory = workers, raw, pin_memory
        self.start_batch = 0
        self.train: RandomPatches | None = None
        self.val: FixedPatches | None = None

    def start_at(self, batch: int) -> None:
        """Start the training stream at ``batch`` (a resumed run: the batches already trained on)."""
        self.start_batch = batch
        if self.train is not None:
            self.train.start_batch = batch

    @property
    def has_validation(self) -> bool:
        return bool(self.val_stores)

    def setup(self, stage: str) -> None:
        s = self.settings
        if self.train is None:
            self.train = RandomPatches(
                self.train_stores, self.spec, s.seed, self.augment, s.sampling, batch_size=s.batch_size, raw=self.raw
            )
            self.train.start_batch = self.start_batch
        if self.val is None and self.has_validation:
            self.val = FixedPatches(self.val_stores, self.spec, s.val_batches * s.batch_size, s.seed + 1)

    def train_dataloader(self) -> DataLoader[Sample]:
        assert self.train is not None, "setup() first"
        return DataLoader(
            self.train,
            batch_size=self.settings.batch_size,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            worker_init_fn=limit_worker_threads,
            generator=torch.Generator().manual_seed(self.settings.seed),  # leaves the global generator alone
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader[Sample] | list[DataLoader[Sample]]:
        """The validation patches; none (an empty list: Lightning skips validation) without val data."""
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.settings.batch_size)
