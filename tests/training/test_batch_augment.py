"""Batched device augmentations against the per-sample ones, and device targets against compute_targets."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from pipeline_lib.config.settings import AugmentSettings
from pipeline_lib.targets import compute_targets
from pipeline_lib.training.augment import RandFlipAxesd, RandMisalignmentd, RandTransposeYXd
from pipeline_lib.training.batch_augment import (
    BATCHED,
    BatchAugment,
    BatchAugmentCallback,
    batched_augmentation,
    device_targets,
    misalign_sample,
    worker_augment,
)
from pipeline_lib.training.data import PatchSpec, RandomPatches, renumber
from tests.training.helpers import model_settings
from tests.training.test_augment import NAMES

OFF = {name: {"p": 0.0} for name in NAMES}
OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -3, 0), (-2, 0, -2)]
KINDS = ("affinity", "boundary", "foreground")


def augment_settings(**on: dict) -> AugmentSettings:
    return model_settings(augment={**OFF, **on}).augment


def batch_of(labels: np.ndarray, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` crops of ``labels`` (z, y, x): image a function of the labels, a random mask."""
    rng = np.random.default_rng(seed)
    shape = (8, 16, 16)
    crops = []
    for _ in range(n):
        corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(labels.shape, shape, strict=True)]
        crops.append(renumber(labels[tuple(slice(c, c + p) for c, p in zip(corner, shape, strict=True))]))
    lab = np.stack(crops)[:, None]
    return {
        "image": torch.from_numpy((lab % 13).astype(np.float32) / 13),
        "labels": torch.from_numpy(lab.astype(np.int32)),
        "mask": torch.from_numpy(rng.random(lab.shape) > 0.1),
    }


@pytest.mark.parametrize("ignore_zero", [False, True])
def test_device_targets_equal_compute_targets(labels_volume: np.ndarray, ignore_zero: bool) -> None:
    batch = batch_of(labels_volume, 3)
    assert (batch["labels"] == 0).any()
    target, weight = device_targets(batch["labels"][:, 0], batch["mask"][:, 0], KINDS, OFFSETS, ignore_zero)
    for i in range(3):
        labels, mask = batch["labels"][i, 0].numpy(), batch["mask"][i, 0].numpy()
        expected = compute_targets(labels, mask, KINDS, OFFSETS, ignore_zero=ignore_zero)
        np.testing.assert_array_equal(target[i].numpy(), expected[0])
        np.testing.assert_array_equal(weight[i].numpy(), expected[1])
    with pytest.raises(ValueError, match="distance"):
        device_targets(batch["labels"][:, 0], batch["mask"][:, 0], ["distance"], OFFSETS)


def test_certain_flips_and_transpose_equal_the_per_sample_transforms(labels_volume: np.ndarray) -> None:
    batch = batch_of(labels_volume, 4)
    out = BatchAugment(augment_settings(flip={"p": 1.0}, transpose={"p": 1.0}), KINDS, OFFSETS, 0)(batch, 0)
    flip, transpose = (
        RandFlipAxesd(["image", "labels", "mask"], 1.0),
        RandTransposeYXd(["image", "labels", "mask"], 1.0),
    )
    for i in range(4):
        sample = {k: batch[k][i].numpy() for k in ("image", "labels", "mask")}
        sample = transpose(flip(sample))
        np.testing.assert_array_equal(out["image"][i].numpy(), sample["image"])
        expected = compute_targets(sample["labels"][0], sample["mask"][0], KINDS, OFFSETS)
        np.testing.assert_array_equal(out["target"][i].numpy(), expected[0])
        np.testing.assert_array_equal(out["weight"][i].numpy(), expected[1])


def test_zyx_transpose_permutes_each_sample_and_its_labels_alike() -> None:
    n, shape = 64, (4, 4, 4)
    volume = torch.arange(64).reshape(shape)  # every voxel distinct: the axis order is read off the output
    batch = {
        "image": volume[None, None].float().repeat(n, 1, 1, 1, 1),
        "labels": volume[None, None].int().repeat(n, 1, 1, 1, 1) + 1,
        "mask": (volume % 3 > 0)[None, None].repeat(n, 1, 1, 1, 1),  # not symmetric: must move too
    }
    settings = model_settings(augment={**OFF, "transpose": {"p": 0.5, "axes": "zyx"}}, patch_shape=list(shape)).augment
    out = BatchAugment(settings, ["affinity"], OFFSETS, 0)(batch, 3)
    orders = []
    for i in range(n):
        image = out["image"][i, 0]
        (order,) = [o for o in itertools.permutations(range(3)) if torch.equal(image, volume.permute(o).float())]
        moved = volume.permute(order).numpy()
        expected = compute_targets(moved + 1, moved % 3 > 0, ["affinity"], OFFSETS)
        np.testing.assert_array_equal(out["target"][i].numpy(), expected[0])
        np.testing.assert_array_equal(out["weight"][i].numpy(), expected[1])
        orders.append(order)
    counts = Counter(orders)
    assert 20 <= counts[(0, 1, 2)] <= 44 and len(counts) == 6  # p 0.5: about half unchanged, the rest spread


@pytest.mark.parametrize("shift", [(2, -3), (-1, 0), (0, 3)])
def test_misalignment_equals_the_per_sample_transform(labels_volume: np.ndarray, shift: tuple[int, int]) -> None:
    batch = batch_of(labels_volume, 1)
    image, labels, mask = (batch[k][0, 0].clone() for k in ("image", "labels", "mask"))
    misalign_sample(image, labels, mask, 3, *shift)
    transform = RandMisalignmentd(["image", "labels", "mask"], 1.0, 3)

    class Draws:  # the per-sample transform's random state, answering with these parameters
        def randint(self, low: int, high: int | None = None, size: int | None = None) -> object:
            return np.array(shift) if size == 2 else 3

    transform.R = Draws()  # type: ignore[assignment]
    sample = {
        "image": batch["image"][0].numpy(),
        "labels": batch["labels"][0].numpy(),
        "mask": batch["mask"][0].float().numpy(),
    }
    transform.apply(sample)
    np.testing.assert_array_equal(image.numpy(), sample["image"][0])
    np.testing.assert_array_equal(labels.numpy(), sample["labels"][0])
    np.testing.assert_array_equal(mask.numpy(), sample["mask"][0] > 0.5)


def test_each_augmentation_fires_with_its_probability_and_parameters() -> None:
    """Over 4000 constant patches: how often each one fires, and its parameter's distribution."""
    n = 4000
    labels = torch.ones((n, 1, 4, 6, 6), dtype=torch.int32)
    ramp = torch.arange(4 * 6 * 6, dtype=torch.float32).reshape(1, 1, 4, 6, 6) / 143
    batch = {"image": ramp.repeat(n, 1, 1, 1, 1), "labels": labels, "mask": torch.ones_like(labels, dtype=torch.bool)}

    def run(**on: dict) -> torch.Tensor:
        return BatchAugment(augment_settings(**on), ["affinity"], OFFSETS, 7)(dict(batch), 3)["image"][:, 0]

    def fired(image: torch.Tensor) -> torch.Tensor:
        return (image - batch["image"][:, 0]).flatten(1).abs().amax(1) > 1e-6

    def close(fraction: float, p: float) -> bool:  # within 4 standard deviations
        return abs(fraction - p) < 4 * (p * (1 - p) / n) ** 0.5

    assert close(fired(run(flip={"p": 0.3})).float().mean().item(), 1 - 0.7**3)  # some axis flipped
    assert close(fired(run(transpose={"p": 0.4})).float().mean().item(), 0.4)
    assert close(fired(run(misalignment={"p": 0.2, "max_shift": 2})).float().mean().item(), 0.2 * (1 - 1 / 25))
    assert close(fired(run(gamma={"p": 0.3, "range": [0.7, 1.5]})).float().mean().item(), 0.3)
    missing = run(missing_section={"p": 0.25, "max_sections": 2})
    blank = (missing.flatten(2).amax(2) == 0).sum(1)  # whole sections set to 0 per patch
    assert close((blank > 0).float().mean().item(), 0.25) and int(blank.max()) == 2
    contrast = run(contrast={"p": 0.5, "range": [-0.2, 0.2]})
    factor = contrast[:, -1, -1, -1] / batch["image"][:, 0, -1, -1, -1] - 1
    changed = factor.abs() > 1e-6
    assert close(changed.float().mean().item(), 0.5) and abs(factor[changed].mean().item()) < 0.01
    assert factor.min() >= -0.2 - 1e-6 and factor.max() <= 0.2 + 1e-6
    brightness = run(brightness={"p": 0.5, "range": [0.1, 0.3]})[:, 0, 0, 0]
    on = brightness > 1e-6
    assert close(on.float().mean().item(), 0.5) and abs(brightness[on].mean().item() - 0.2) < 0.01
    noise = run(noise={"p": 0.5, "std": 0.2}) - batch["image"][:, 0]
    std = noise.flatten(1).std(1)
    assert close((std > 0).float().mean().item(), 0.5) and abs(std[std > 0].mean().item() - 0.1) < 0.01


def test_batches_are_reproducible_per_step_and_off_means_unchanged(labels_volume: np.ndarray) -> None:
    batch = batch_of(labels_volume, 4)
    on = {name: {"p": 0.5} for name in BATCHED}
    augment = BatchAugment(augment_settings(**on), KINDS, OFFSETS, 0)
    a, b, c = augment(dict(batch), 5), augment(dict(batch), 5), augment(dict(batch), 6)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(a["image"], c["image"])
    off = BatchAugment(augment_settings(), KINDS, OFFSETS, 0)(dict(batch), 0)
    assert torch.equal(off["image"], batch["image"])
    callback, data = BatchAugmentCallback(augment), dict(batch)

    class Trainer:
        global_step = 5

    callback.on_train_batch_start(Trainer(), None, data, 0)
    assert set(data) == {"image", "target", "weight"} and torch.equal(data["image"], a["image"])


def test_workers_keep_only_what_has_no_batched_form() -> None:
    settings = model_settings(augment={**OFF, "flip": {"p": 0.5}, "elastic": {"p": 0.2}, "noise": {"p": 0.3}})
    assert batched_augmentation(settings)
    left = worker_augment(settings.augment)
    assert left.flip.p == 0 and left.noise.p == 0 and left.elastic.p == 0.2
    assert not batched_augmentation(model_settings(targets=[{"type": "affinity"}, {"type": "distance"}]))
    assert not batched_augmentation(model_settings(augment={"batched": False}))


def test_raw_patches_and_the_volume_cache(stores: tuple) -> None:
    settings = model_settings()
    spec = PatchSpec((8, 16, 16), tuple(settings.offsets))
    raw = RandomPatches([stores[0]], spec, 0, settings.augment, settings.sampling, raw=True)
    sample = next(iter(raw))
    assert set(sample) == {"image", "labels", "mask"} and sample["labels"].dtype == torch.int32
    assert sample["image"].shape == sample["mask"].shape == (1, 8, 16, 16) and sample["mask"].dtype == torch.bool
    assert raw.cached is not None and isinstance(raw.cached[0].image, np.ndarray)
    lazy_sampling = type(settings.sampling)(settings.sampling.min_foreground, settings.sampling.max_attempts, 0.0)
    lazy = RandomPatches([stores[0]], spec, 0, settings.augment, lazy_sampling)
    assert lazy.cached is None
    a, b = next(iter(lazy)), next(iter(RandomPatches([stores[0]], spec, 0, settings.augment, settings.sampling)))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])  # cache changes nothing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches(labels_volume: np.ndarray) -> None:
    """Parameters are drawn on the CPU, so the device only changes float rounding (gamma's power)."""
    batch = batch_of(labels_volume, 6)
    on = {name: {"p": 0.5} for name in BATCHED}
    augment = BatchAugment(augment_settings(**on), KINDS, OFFSETS, 0)
    cpu = augment(dict(batch), 1)
    cuda = augment({k: v.cuda() for k, v in batch.items()}, 1)
    torch.testing.assert_close(cuda["image"].cpu(), cpu["image"], atol=1e-5, rtol=1e-5)
    assert torch.equal(cuda["target"].cpu(), cpu["target"]) and torch.equal(cuda["weight"].cpu(), cpu["weight"])
