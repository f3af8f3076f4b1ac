"""Augmentations keep labels integer with no new ids, and keep image and labels aligned."""

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from pipeline_lib.errors import ConfigError
from pipeline_lib.training.augment import augment_patch, build_augment
from pipeline_lib.training.data import renumber
from tests.training.helpers import model_settings

NAMES = (
    "flip",
    "transpose",
    "rot90",
    "elastic",
    "misalignment",
    "missing_section",
    "motion_blur",
    "cut_blur",
    "cut_noise",
    "gamma",
    "contrast",
    "brightness",
    "noise",
)
OFF = {name: {"p": 0.0} for name in NAMES}


def _pipeline(shape, seed=0, **on):
    augment = {**OFF, **on}
    settings = model_settings(augment=augment, patch_shape=list(shape)).augment
    pipeline = build_augment(settings, shape)
    pipeline.set_random_state(seed=seed)
    return pipeline


def _image_of(labels):
    return (labels % 13).astype(np.float32) / 13.0


@pytest.mark.parametrize("shape", [(8, 32, 32), (8, 24, 32)])
def test_geometric_and_misalignment_keep_exact_alignment(labels_volume, shape):
    labels = renumber(labels_volume[: shape[0], : shape[1], : shape[2]])
    pipeline = _pipeline(
        shape, flip={"p": 0.5}, transpose={"p": 0.5}, rot90={"p": 0.5}, misalignment={"p": 1.0, "max_shift": 3}
    )
    changed = 0
    for _ in range(8):
        image, out, mask = augment_patch(pipeline, _image_of(labels), labels, np.ones(shape, bool))
        assert out.shape == image.shape == mask.shape == shape
        assert np.issubdtype(out.dtype, np.integer)
        assert set(np.unique(out)) <= set(np.unique(labels))
        np.testing.assert_array_equal(image[mask], _image_of(out)[mask])
        changed += not np.array_equal(out, labels)
        assert mask.mean() > 0.7
    assert changed >= 6


def test_zyx_transpose_draws_each_other_axis_order():
    shape = (4, 4, 4)
    volume = np.arange(64).reshape(shape)  # every voxel distinct: the axis order is read off the output
    pipeline = _pipeline(shape, transpose={"p": 1.0, "axes": "zyx"})
    seen = []
    for _ in range(100):
        image, labels, mask = augment_patch(pipeline, volume.astype(np.float32), volume, volume % 3 > 0)
        (order,) = [o for o in itertools.permutations(range(3)) if np.array_equal(labels, volume.transpose(o))]
        np.testing.assert_array_equal(image, labels)
        np.testing.assert_array_equal(mask, labels % 3 > 0)  # the mask moves with them
        seen.append(order)
    counts = Counter(seen)
    assert (0, 1, 2) not in counts and len(counts) == 5 and min(counts.values()) >= 8


def test_elastic_uses_nearest_for_labels(labels_volume):
    shape = (8, 32, 32)
    labels = renumber(labels_volume[:8, :32, :32])
    pipeline = _pipeline(shape, elastic={"p": 1.0, "sigma": 4.0, "magnitude": 3.0})
    image, out, mask = augment_patch(pipeline, _image_of(labels), labels, np.ones(shape, bool))
    assert not np.array_equal(out, labels)
    assert set(np.unique(out)) <= set(np.unique(labels)) | {0}
    # The image is resampled bilinearly: it equals f(labels) inside objects (3x3x3 uniform labels).
    interior = (ndimage.minimum_filter(out, 3) == ndimage.maximum_filter(out, 3)) & mask
    assert interior.sum() > 100
    agree = np.isclose(image, _image_of(out), atol=1e-3)[interior]
    assert agree.mean() > 0.95


def test_em_and_intensity_augmentations_change_only_the_image(labels_volume):
    shape = (8, 32, 32)
    labels = renumber(labels_volume[:8, :32, :32])
    pipeline = _pipeline(
        shape,
        missing_section={"p": 1.0},
        motion_blur={"p": 1.0},
        cut_blur={"p": 1.0},
        cut_noise={"p": 1.0},
        gamma={"p": 1.0},
        contrast={"p": 1.0},
        brightness={"p": 1.0},
        noise={"p": 1.0},
    )
    before = _image_of(labels)
    image, out, mask = augment_patch(pipeline, before, labels, np.ones(shape, bool))
    np.testing.assert_array_equal(out, labels)
    assert mask.all() and image.dtype == np.float32
    assert not np.allclose(image, before)
    assert np.isfinite(image).all()


def test_missing_section_blanks_whole_sections(labels_volume):
    shape = (8, 32, 32)
    labels = renumber(labels_volume[:8, :32, :32])
    image, _, _ = augment_patch(
        _pipeline(shape, missing_section={"p": 1.0, "max_sections": 2}),
        _image_of(labels) + 1.0,
        labels,
        np.ones(shape, bool),
    )
    blank = [z for z in range(8) if not image[z].any()]
    assert 1 <= len(blank) <= 2


def test_renumber_keeps_zero_and_equality():
    labels = np.array([[[0, 2**40, 2**40, 7]]], dtype=np.uint64)
    np.testing.assert_array_equal(renumber(labels), [[[0, 2, 2, 1]]])
    small = np.array([[[5, 9]]], dtype=np.uint64)
    assert renumber(small).dtype == np.int32
    np.testing.assert_array_equal(renumber(small), small)


@pytest.mark.parametrize(
    ("augment", "key"),
    [
        ({"flip": {"p": 1.5}}, "augment.flip.p"),
        ({"elastic": {"sigma": -1.0}}, "augment.elastic.sigma"),
        ({"noise": {"std": -0.1}}, "augment.noise.std"),
        ({"gamma": {"range": [0.0, 1.0]}}, "augment.gamma.range.0"),
        ({"cut_blur": {"factor": 1}}, "augment.cut_blur.factor"),
        ({"misalignment": {"max_shift": -2}}, "augment.misalignment.max_shift"),
        ({"missing_sections": {"p": 0.1}}, "augment"),
    ],
)
def test_bad_augment_values_name_the_key(augment, key):
    with pytest.raises(ConfigError, match=f"key 'models.m.{key}'"):
        model_settings(augment=augment)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampling": {"min_foreground": 1.2}}, "models.m.sampling.min_foreground"),
        ({"sampling": {"max_attempts": 0}}, "models.m.sampling.max_attempts"),
        ({"targets": [{"type": "boundary"}]}, "one 'affinity' target, listed first"),
        ({"targets": [{"type": "affinity", "losses": [{"name": "focal"}]}]}, "models.m.targets.0.losses.0.name"),
        ({"lr_schedule": {"name": "plateau", "warmup_steps": 5}}, "warm-up is not supported"),
        ({"targets": [{"type": "affinity"}, {"type": "lsd", "lsd_downsample": 3}]}, "divisible by the lsd"),
        ({"deep_supervision": {"weights": [1, -0.5]}}, "models.m.deep_supervision.weights.1"),
        ({"optimizer": {"name": "lamb"}}, "models.m.optimizer.name"),
        ({"augment": {"transpose": {"axes": "zyx"}}, "patch_shape": [8, 16, 16]}, "needs a cube patch_shape"),
        ({"augment": {"transpose": {"axes": "xy"}}}, "models.m.augment.transpose.axes"),
    ],
)
def test_bad_training_values_give_their_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        model_settings(**overrides)
