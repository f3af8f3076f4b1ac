"""Training augmentations as MONAI dictionary transforms.

A sample is ``{"image": float32 (1, z, y, x), "labels": int (1, z, y, x), "mask": float32
(1, z, y, x)}``; augmentation runs *before* targets are computed, so targets always match
the augmented labels. Contracts:

- geometric transforms move image, labels and mask together; labels are only permuted or
  resampled with nearest-neighbour interpolation, so no new label ids appear (elastic and
  misalignment may let label 0 or masked voxels enter at the borders);
- the EM-specific and intensity transforms change the image only (misalignment excepted);
- labels must be small consecutive ids (the sampler renumbers each patch), because MONAI's
  resampling passes them through float32.

MONAI provides the 90° rotations, elastic deformation, contrast, brightness and noise. Flips
and gamma are defined here in MONAI's dictionary style because MONAI's versions are slow on
CPU for this use (``RandFlipd``: a ``torch.flip`` copy per key and axis, ~3 ms each on a
24×48×48 patch; ``RandAdjustContrastd``: ~50 ms), as are the EM-specific ones
(misalignment, missing sections, motion blur, cut-blur, cut-noise) and the transposes.
A transform with ``p == 0`` is left out of the pipeline.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai import transforms as mt
from scipy import ndimage

from pipeline_lib.config.settings import AugmentSettings

KEYS = ("image", "labels", "mask")
Data = dict[Hashable, Any]


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class _RandD(mt.RandomizableTransform, mt.MapTransform):
    """Base: with probability ``prob`` apply :meth:`apply` to the sample (numpy arrays)."""

    def __init__(self, keys: Sequence[str], prob: float) -> None:
        mt.RandomizableTransform.__init__(self, prob)
        mt.MapTransform.__init__(self, keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> Data:
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            for key in self.keys:
                d[key] = _np(d[key])
            self.apply(d)
        return d

    @abstractmethod
    def apply(self, d: Data) -> None:
        """Change the sample ``d`` in place (called only when the transform fires)."""

    def _box(self, shape: Sequence[int], max_fraction: float) -> tuple[slice, ...]:
        """A random box: all channels, random z range, y and x sides up to ``max_fraction``."""
        z0 = int(self.R.randint(shape[1]))
        z1 = int(self.R.randint(z0, shape[1])) + 1
        box: list[slice] = [slice(None), slice(z0, z1)]
        for size in shape[2:]:
            side = int(self.R.randint(1, max(int(size * max_fraction), 1) + 1))
            start = int(self.R.randint(size - side + 1))
            box.append(slice(start, start + side))
        return tuple(box)


class RandFlipAxesd(_RandD):
    """Flip each spatial axis independently with probability ``prob`` (one copy in all)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> Data:
        d = dict(data)
        self.apply(d)  # one coin per axis, not one for the whole transform
        return d

    def apply(self, d: Data) -> None:
        axes = tuple(axis + 1 for axis in range(3) if self.R.rand() < self.prob)
        if axes:
            for key in self.keys:
                d[key] = np.ascontiguousarray(np.flip(_np(d[key]), axis=axes))


class RandGammad(_RandD):
    """``min + range · ((x − min) / range) ** gamma`` on the image, gamma uniform in ``gamma_range``."""

    def __init__(self, keys: Sequence[str], prob: float, gamma_range: Sequence[float]) -> None:
        super().__init__(keys, prob)
        self.gamma_range = (float(gamma_range[0]), float(gamma_range[1]))

    def apply(self, d: Data) -> None:
        gamma = self.R.uniform(*self.gamma_range)
        image = d["image"]
        low, high = float(image.min()), float(image.max())
        if high > low:
            d["image"] = (low + (high - low) * ((image - low) / (high - low)) ** gamma).astype(np.float32)


class RandTransposeYXd(_RandD):
    """Swap the y and x axes (patches square in y–x only)."""

    def apply(self, d: Data) -> None:
        for key in self.keys:
            d[key] = np.ascontiguousarray(np.swapaxes(d[key], 2, 3))


# The five orders of (z, y, x) other than the identity, as spatial axes 0-2
AXIS_ORDERS = tuple(order for order in itertools.permutations(range(3)) if order != (0, 1, 2))


class RandTransposeZYXd(_RandD):
    """Put the spatial axes in one of the five non-identity orders (cube patches only)."""

    def apply(self, d: Data) -> None:
        order = AXIS_ORDERS[int(self.R.randint(len(AXIS_ORDERS)))]
        for key in self.keys:
            d[key] = np.ascontiguousarray(np.transpose(d[key], (0, *(axis + 1 for axis in order))))


class _Rot180d(_RandD):
    """Rotate by 180° in y–x (the only 90°-multiple that keeps a non-square patch's shape)."""

    def apply(self, d: Data) -> None:
        for key in self.keys:
            d[key] = np.ascontiguousarray(np.flip(d[key], axis=(2, 3)))


class RandMisalignmentd(_RandD):
    """Shift sections ``z0:`` by ``(dy, dx)``; voxels that wrap around are masked (mask 0)."""

    def __init__(self, keys: Sequence[str], prob: float, max_shift: int) -> None:
        super().__init__(keys, prob)
        self.max_shift = max_shift

    def apply(self, d: Data) -> None:
        depth = d["image"].shape[1]
        if depth < 2 or self.max_shift == 0:
            return
        z0 = int(self.R.randint(1, depth))
        dy, dx = (int(v) for v in self.R.randint(-self.max_shift, self.max_shift + 1, size=2))
        for key in self.keys:
            d[key] = d[key].copy()
            d[key][:, z0:] = np.roll(d[key][:, z0:], (dy, dx), axis=(2, 3))
        wrapped = np.zeros(d["mask"].shape[2:], dtype=bool)
        wrapped[:dy] = dy > 0
        wrapped[dy:] |= dy < 0
        wrapped[:, :dx] |= dx > 0
        wrapped[:, dx:] |= dx < 0
        d["mask"][:, z0:, wrapped] = 0


class RandMissingSectiond(_RandD):
    """Set up to ``max_sections`` whole image sections to 0 (black), as in lost or blank sections."""

    def __init__(self, keys: Sequence[str], prob: float, max_sections: int) -> None:
        super().__init__(keys, prob)
        self.max_sections = max_sections

    def apply(self, d: Data) -> None:
        depth = d["image"].shape[1]
        n = int(self.R.randint(1, min(self.max_sections, depth) + 1))
        d["image"] = d["image"].copy()
        d["image"][:, self.R.choice(depth, n, replace=False)] = 0.0


class RandMotionBlurd(_RandD):
    """Box-blur one image section along y or x over ``kernel_size`` voxels."""

    def __init__(self, keys: Sequence[str], prob: float, kernel_size: int) -> None:
        super().__init__(keys, prob)
        self.kernel_size = kernel_size

    def apply(self, d: Data) -> None:
        z = int(self.R.randint(d["image"].shape[1]))
        axis = int(self.R.randint(2))
        d["image"] = d["image"].copy()
        d["image"][0, z] = ndimage.uniform_filter1d(d["image"][0, z], self.kernel_size, axis=axis, mode="reflect")


class RandCutBlurd(_RandD):
    """Down-sample a random box by ``factor`` in y–x and up-sample it again (bilinear)."""

    def __init__(self, keys: Sequence[str], prob: float, max_fraction: float, factor: int) -> None:
        super().__init__(keys, prob)
        self.max_fraction, self.factor = max_fraction, factor

    def apply(self, d: Data) -> None:
        box = self._box(d["image"].shape, self.max_fraction)
        region = torch.from_numpy(np.ascontiguousarray(d["image"][box][0]))[:, None]  # (z, 1, y, x)
        small_shape = [max(s // self.factor, 1) for s in region.shape[2:]]
        small = F.interpolate(region, size=small_shape, mode="area")
        d["image"] = d["image"].copy()
        d["image"][box] = F.interpolate(small, size=region.shape[2:], mode="bilinear")[:, 0].numpy()[None]


class RandCutNoised(_RandD):
    """Add Gaussian noise of ``std`` inside a random box of the image."""

    def __init__(self, keys: Sequence[str], prob: float, max_fraction: float, std: float) -> None:
        super().__init__(keys, prob)
        self.max_fraction, self.std = max_fraction, std

    def apply(self, d: Data) -> None:
        box = self._box(d["image"].shape, self.max_fraction)
        d["image"] = d["image"].copy()
        d["image"][box] += self.R.normal(0.0, self.std, size=d["image"][box].shape).astype(np.float32)


def build_augment(settings: AugmentSettings, patch_shape: Sequence[int]) -> mt.Compose:
    """The augmentation pipeline for patches of ``patch_shape`` (z, y, x)."""
    s, keys, square = settings, list(KEYS), patch_shape[1] == patch_shape[2]
    steps: list[Any] = [RandFlipAxesd(keys, s.flip.p)] if s.flip.p else []
    if s.transpose.p and s.transpose.axes == "zyx":
        steps.append(RandTransposeZYXd(keys, s.transpose.p))
    elif s.transpose.p and square:
        steps.append(RandTransposeYXd(keys, s.transpose.p))
    if s.rot90.p:
        steps.append(
            mt.RandRotate90d(keys, prob=s.rot90.p, max_k=3, spatial_axes=(1, 2))
            if square
            else _Rot180d(keys, s.rot90.p)
        )
    if s.elastic.p:
        # MONAI smooths uniform(-1, 1) noise with a Gaussian of sigma and multiplies by the
        # magnitude; smoothing shrinks the noise's std to ~ 1/sqrt(3) / (2 sqrt(pi) sigma)^1.5,
        # so this factor makes `magnitude` the displacement's standard deviation in voxels.
        gain = math.sqrt(3) * (2 * math.sqrt(math.pi) * s.elastic.sigma) ** 1.5
        magnitude = s.elastic.magnitude * gain
        steps.append(
            mt.Rand3DElasticd(
                keys,
                sigma_range=(s.elastic.sigma, s.elastic.sigma),
                magnitude_range=(magnitude, magnitude),
                prob=s.elastic.p,
                mode=("bilinear", "nearest", "nearest"),
                padding_mode=("reflection", "zeros", "zeros"),
            )
        )
    if s.misalignment.p:
        steps.append(RandMisalignmentd(keys, s.misalignment.p, s.misalignment.max_shift))
    if s.missing_section.p:
        steps.append(RandMissingSectiond(["image"], s.missing_section.p, s.missing_section.max_sections))
    if s.motion_blur.p:
        steps.append(RandMotionBlurd(["image"], s.motion_blur.p, s.motion_blur.kernel_size))
    if s.cut_blur.p:
        steps.append(RandCutBlurd(["image"], s.cut_blur.p, s.cut_blur.max_fraction, s.cut_blur.factor))
    if s.cut_noise.p:
        steps.append(RandCutNoised(["image"], s.cut_noise.p, s.cut_noise.max_fraction, s.cut_noise.std))
    if s.gamma.p:
        steps.append(RandGammad(["image"], s.gamma.p, s.gamma.range))
    if s.contrast.p:
        steps.append(mt.RandScaleIntensityd(["image"], factors=s.contrast.range, prob=s.contrast.p))
    if s.brightness.p:
        steps.append(mt.RandShiftIntensityd(["image"], offsets=s.brightness.range, prob=s.brightness.p))
    if s.noise.p:
        steps.append(mt.RandGaussianNoised(["image"], prob=s.noise.p, std=s.noise.std))
    return mt.Compose(steps)


def augment_patch(
    pipeline: mt.Compose, image: np.ndarray, labels: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``pipeline`` to ``(z, y, x)`` arrays; returns float32 image, int64 labels, bool mask."""
    data = {"image": image[None].astype(np.float32), "labels": labels[None], "mask": mask[None].astype(np.float32)}
    out = pipeline(data)
    new_labels = np.rint(_np(out["labels"])[0]).astype(np.int64)
    return (
        np.ascontiguousarray(_np(out["image"])[0], dtype=np.float32),
        np.ascontiguousarray(new_labels),
        np.ascontiguousarray(_np(out["mask"])[0] > 0.5),
    )
