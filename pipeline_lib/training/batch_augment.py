"""Training augmentations batched on the training device, and the targets computed there.

With ``augment.batched`` (the default) the loader workers only crop patches (and run the
augmentations that have no batched form: rot90, elastic, motion blur, cut-blur, cut-noise);
the batch ``{"image", "labels", "mask"}`` is moved to the device by Lightning and
:class:`BatchAugment` applies, as tensor operations on the whole batch,

- **geometric** (image, labels and mask together): axis flips, the transpose (y–x on
  square patches, or one of the five other axis orders on cubes), misalignment (sections
  ``z0:`` shifted by ``(dy, dx)``, wrapped voxels masked);
- **image only**: missing sections, gamma, contrast (``x · (1 + f)``), brightness
  (``x + b``), Gaussian noise (std uniform in ``[0, std]``, as MONAI's ``RandGaussianNoise``);

each with the same per-sample probability and parameter distribution as the per-sample
transforms of :mod:`pipeline_lib.training.augment` (tested), then computes the targets
(:func:`device_targets`, equal to :func:`pipeline_lib.targets.compute_targets`). Only
affinity, boundary and foreground targets have a device form; with a ``distance`` target
everything stays in the workers (:func:`batched_augmentation`). Random draws come from a
generator seeded with ``(seed, step)``, so a run and its resumption draw the same values.
The batched flips and transpose run after the worker-side rot90/elastic (the per-sample
pipeline runs them before): the distributions are symmetric, so the augmented data has the
same distribution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from pipeline_lib.config.settings import AugmentSettings, ModelSettings
from pipeline_lib.targets import _edge_slices
from pipeline_lib.training.augment import AXIS_ORDERS

BATCHED = ("flip", "transpose", "misalignment", "missing_section", "gamma", "contrast", "brightness", "noise")
DEVICE_TARGETS = ("affinity", "boundary", "foreground")


def batched_augmentation(settings: ModelSettings) -> bool:
    """Whether this model's batches are augmented on the device (``augment.batched`` and targets that allow it)."""
    return settings.augment.batched and all(t.type in DEVICE_TARGETS for t in settings.targets)


def worker_augment(settings: AugmentSettings) -> AugmentSettings:
    """The augmentations left to the loader workers: ``settings`` with the batched ones switched off."""
    off = {name: dataclasses.replace(getattr(settings, name), p=0.0) for name in BATCHED}
    return dataclasses.replace(settings, **off)


def device_targets(
    labels: torch.Tensor,
    mask: torch.Tensor,
    kinds: Sequence[str],
    offsets: Sequence[Sequence[int]],
    ignore_zero: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and loss weights ``(B, channels, z, y, x)`` of labels/mask ``(B, z, y, x)``, as
    :func:`~pipeline_lib.targets.compute_targets` computes them per sample (affinity, boundary, foreground),
    ``ignore_zero`` included."""
    if ignore_zero:
        mask = mask & (labels != 0)
    valid = mask.float()[:, None]
    targets, weights = [], []
    for kind in kinds:
        if kind == "affinity":
            aff = torch.zeros((labels.shape[0], len(offsets), *labels.shape[1:]), device=labels.device)
            inside = torch.zeros_like(aff)
            for k, offset in enumerate(offsets):
                here, there = _edge_slices(offset)
                a, b = labels[(slice(None), *here)], labels[(slice(None), *there)]
                at: tuple[Any, ...] = (slice(None), k, *here)
                aff[at] = ((a == b) & (a != 0)).float()
                inside[at] = (mask[(slice(None), *there)] & mask[(slice(None), *here)]).float() if ignore_zero else 1.0
            targets.append(aff)
            weights.append(inside * valid)
            continue
        if kind == "boundary":
            edge = labels == 0
            for axis in (1, 2, 3):
                n = labels.shape[axis]
                differs = labels.narrow(axis, 0, n - 1) != labels.narrow(axis, 1, n - 1)
                edge.narrow(axis, 0, n - 1).logical_or_(differs)
                edge.narrow(axis, 1, n - 1).logical_or_(differs)
            value = edge.float()
        elif kind == "foreground":
            value = (labels > 0).float()
        else:
            raise ValueError(f"target '{kind}' has no device form; available: {', '.join(DEVICE_TARGETS)}")
        targets.append(value[:, None])
        weights.append(valid.clone())
    return torch.cat(targets, 1), torch.cat(weights, 1)


def _where(fire: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(fire.view(-1, *[1] * (old.ndim - 1)), new, old)


class BatchAugment:
    """The batched augmentations and device targets of one model (see the module doc)."""

    def __init__(
        self,
        settings: AugmentSettings,
        kinds: Sequence[str],
        offsets: Sequence[Sequence[int]],
        seed: int,
        ignore_zero: bool = False,
    ):
        self.s, self.kinds, self.offsets, self.seed = settings, tuple(kinds), offsets, seed
        self.ignore_zero = ignore_zero

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """``{"image", "labels", "mask"}`` ``(B, 1, z, y, x)`` → ``{"image", "target", "weight"}``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)  # parameters: drawn on the CPU

        def coin(p: float) -> torch.Tensor:
            return torch.rand(n, generator=g) < p

        def uniform(low: float, high: float) -> torch.Tensor:
            return (low + (high - low) * torch.rand(n, generator=g)).to(device)

        image, labels, mask = batch["image"].float(), batch["labels"][:, 0], batch["mask"][:, 0].bool()
        n, device, s = image.shape[0], image.device, self.s
        image = image[:, 0]
        stack = [image, labels, mask]
        for axis in (1, 2, 3):
            if s.flip.p:
                fire = coin(s.flip.p).to(device)
                stack = [_where(fire, t.flip(axis), t) for t in stack]
        if s.transpose.p and s.transpose.axes == "zyx":
            fire = coin(s.transpose.p)
            choice = torch.where(fire, torch.randint(len(AXIS_ORDERS), (n,), generator=g), -1).to(device)
            for k, order in enumerate(AXIS_ORDERS):
                dims = (0, *(axis + 1 for axis in order))
                stack = [_where(choice == k, t.permute(dims), t) for t in stack]
        elif s.transpose.p and image.shape[2] == image.shape[3]:
            fire = coin(s.transpose.p).to(device)
            stack = [_where(fire, t.transpose(2, 3), t) for t in stack]
        image, labels, mask = stack
        if s.misalignment.p and image.shape[1] > 1 and s.misalignment.max_shift:
            image, labels, mask = self._misalign(image, labels, mask, coin(s.misalignment.p), g)
        if s.missing_section.p:
            depth = image.shape[1]
            fire = coin(s.missing_section.p)
            count = torch.randint(1, min(s.missing_section.max_sections, depth) + 1, (n,), generator=g)
            rank = torch.rand(n, depth, generator=g).argsort(1).argsort(1)  # a random order of the sections
            blank = (fire[:, None] & (rank < count[:, None])).to(device)
            image = image.masked_fill(blank[:, :, None, None], 0.0)
        if s.gamma.p:
            fire, gamma = coin(s.gamma.p).to(device), uniform(*s.gamma.range).view(-1, 1, 1, 1)
            low = image.amin((1, 2, 3), keepdim=True)
            span = image.amax((1, 2, 3), keepdim=True) - low
            safe = span.clamp_min(torch.finfo(image.dtype).tiny)
            adjusted = low + span * ((image - low) / safe) ** gamma
            image = _where(fire & (span.flatten() > 0), adjusted, image)
        if s.contrast.p:
            fire, factor = coin(s.contrast.p).to(device), uniform(*s.contrast.range).view(-1, 1, 1, 1)
            image = _where(fire, image * (1 + factor), image)
        if s.brightness.p:
            fire, shift = coin(s.brightness.p).to(device), uniform(*s.brightness.range).view(-1, 1, 1, 1)
            image = _where(fire, image + shift, image)
        if s.noise.p:
            fire, std = coin(s.noise.p).to(device), uniform(0.0, s.noise.std).view(-1, 1, 1, 1)
            noise = torch.randn(image.shape, generator=g).to(device)
            image = _where(fire, image + noise * std, image)
        target, weight = device_targets(labels, mask, self.kinds, self.offsets, self.ignore_zero)
        return {"image": image[:, None].contiguous(), "target": target, "weight": weight}

    def _misalign(
        self, image: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, fire: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per fired sample: sections ``z0:`` rolled by ``(dy, dx)``, the wrapped-around voxels masked."""
        depth, shift = image.shape[1], self.s.misalignment.max_shift
        z0s = torch.randint(1, depth, (len(fire),), generator=g)
        shifts = torch.randint(-shift, shift + 1, (len(fire), 2), generator=g)
        image, labels, mask = image.clone(), labels.clone(), mask.clone()
        for i in torch.nonzero(fire).flatten().tolist():
            z0, dy, dx = int(z0s[i]), int(shifts[i, 0]), int(shifts[i, 1])
            misalign_sample(image[i], labels[i], mask[i], z0, dy, dx)
        return image, labels, mask


def misalign_sample(image: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, z0: int, dy: int, dx: int) -> None:
    """In place on ``(z, y, x)`` tensors: :class:`~pipeline_lib.training.augment.RandMisalignmentd`'s shift."""
    for t in (image, labels, mask):
        t[z0:] = torch.roll(t[z0:], (dy, dx), dims=(1, 2))
    wrapped = torch.zeros(mask.shape[1:], dtype=torch.bool, device=mask.device)
    if dy > 0:
        wrapped[:dy] = True
    elif dy < 0:
        wrapped[dy:] = True
    if dx > 0:
        wrapped[:, :dx] = True
    elif dx < 0:
        wrapped[:, dx:] = True
    mask[z0:] &= ~wrapped


class BatchAugmentCallback(Callback):
    """Replaces each training batch, once on the device, by its batched augmentation and targets."""

    def __init__(self, augment: BatchAugment) -> None:
        self.augment = augment

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        out = self.augment(batch, trainer.global_step)
        batch.clear()
        batch.update(out)
