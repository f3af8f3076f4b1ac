"""TTA exactness for affinities with an oracle model (short and long-range offsets, all 16 variants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline_lib.errors import ConfigError
from pipeline_lib.inference.predictor import WindowPredictor
from pipeline_lib.inference.tta import Combiner, invert
from pipeline_lib.offsets import Variant, inverse_plan, variants
from pipeline_lib.targets import affinities
from tests.inference.conftest import LONG, SHORT, Oracle, blend, random_labels

ALL = variants(["z", "y", "x"], transpose=True)


def test_variants_enumerate_all_combinations() -> None:
    assert len(ALL) == 16 and len(set(ALL)) == 16
    assert ALL[0] == Variant()
    assert [v.name for v in variants(["x", "z"], False)] == ["identity", "flip_z", "flip_x", "flip_zx"]
    assert len(variants([], True)) == 2


def _documented_gap(variant: Variant, offsets: list[list[int]], shape: tuple[int, ...]) -> np.ndarray:
    """Voxels a variant leaves without a value: the |o| slab of each channel shifted back."""
    gap = np.zeros((len(offsets), *shape), dtype=bool)
    for k, plan in enumerate(inverse_plan(variant, offsets)):
        if plan.shift is None:
            continue
        for axis, o in enumerate(plan.shift):
            index = [k] + [slice(None)] * 3
            index[axis + 1] = slice(0, -o)
            gap[tuple(index)] = True
    return gap


@pytest.mark.parametrize("offsets", [SHORT, LONG], ids=["short", "long"])
@pytest.mark.parametrize("variant", ALL, ids=[v.name for v in ALL])
def test_every_variant_inverts_exactly(offsets: list[list[int]], variant: Variant) -> None:
    """Each variant, inverted, gives the true affinities wherever it has a value.

    The voxels without a value are exactly the documented slabs, and there the true
    affinity is undefined anyway (its partner lies outside the input).
    """
    labels = random_labels((20, 26, 30), seed=1)
    oracle = Oracle(offsets)
    image = torch.from_numpy(labels).float()[None, None]
    plain = torch.sigmoid(oracle(image))[0].numpy()
    inverted = invert(torch.sigmoid(oracle(variant.forward(image))), variant, inverse_plan(variant, offsets))[0].numpy()

    truth, mask = affinities(labels, offsets)
    np.testing.assert_array_equal(plain, truth)
    gap = np.isnan(inverted)
    np.testing.assert_array_equal(gap, _documented_gap(variant, offsets, labels.shape))
    assert not mask[gap].any(), "a variant lost a value where the affinity is defined"
    np.testing.assert_array_equal(inverted[~gap], plain[~gap])


def test_naive_unflip_without_shift_is_wrong() -> None:
    """Guard that the test above can fail: un-flipping without the shift misplaces edges."""
    labels = random_labels((12, 20, 20), seed=2)
    oracle = Oracle(SHORT)
    image = torch.from_numpy(labels).float()[None, None]
    flipped = torch.flip(oracle(torch.flip(image, [4])), [4])[0].numpy() > 0
    truth, _ = affinities(labels, SHORT)
    assert (flipped[2] != truth[2]).any()
    np.testing.assert_array_equal(flipped[0], truth[0])


@pytest.mark.parametrize("offsets", [SHORT, LONG], ids=["short", "long"])
@pytest.mark.parametrize("combine", ["mean", "min", "max"])
def test_combined_sliding_window_equals_unaugmented(offsets: list[list[int]], combine: str) -> None:
    """All 16 variants combined through the sliding window equal the plain pass, every voxel."""
    labels = random_labels((24, 36, 40), seed=3).astype(np.float32)
    oracle = Oracle(offsets)
    window, overlap = (12, 20, 20), 0.5

    def run(vs: list[Variant]) -> np.ndarray:
        predictor = WindowPredictor([oracle], offsets, vs, combine)  # type: ignore[arg-type]
        return blend(labels, predictor, window, overlap, 4)[0]

    plain = run([Variant()])
    np.testing.assert_array_equal(run(ALL), plain)
    if combine == "mean":  # and each variant alone (with the identity, which fills the documented gaps)
        for variant in ALL[1:]:
            np.testing.assert_array_equal(run([Variant(), variant]), plain, err_msg=variant.name)


def test_transpose_needs_swapped_partner() -> None:
    with pytest.raises(ConfigError, match="y–x partner"):
        inverse_plan(Variant((), True), SHORT + [[0, -3, 0]])
    inverse_plan(Variant((), True), SHORT + [[0, -3, 0], [0, 0, -3], [-2, -4, -5], [-2, -5, -4]])


def test_partly_flipped_diagonal_is_rejected() -> None:
    diagonal = SHORT + [[0, -2, -2]]
    with pytest.raises(ConfigError, match="diagonal"):
        inverse_plan(Variant((2,), False), diagonal)
    inverse_plan(Variant((1, 2), False), diagonal)  # both components flipped: a plain shift
    inverse_plan(Variant((0,), True), diagonal)


def test_diagonal_offsets_invert_exactly_when_fully_flipped() -> None:
    offsets = SHORT + [[0, -2, -3], [0, -3, -2], [-1, -2, -2]]
    labels = random_labels((14, 22, 22), cell=4, seed=4)
    oracle = Oracle(offsets)
    image = torch.from_numpy(labels).float()[None, None]
    plain = oracle(image)[0].numpy()
    for variant in [Variant((0, 1, 2), True), Variant((0, 1, 2), False)]:
        out = invert(oracle(variant.forward(image)), variant, inverse_plan(variant, offsets))[0].numpy()
        has = ~np.isnan(out)
        np.testing.assert_array_equal(out[has], plain[has])


def test_combiner_skips_missing_values() -> None:
    nan = float("nan")
    a = torch.tensor([0.2, 0.4, nan])
    b = torch.tensor([0.6, nan, nan])
    for how, expected in [("mean", [0.4, 0.4, nan]), ("min", [0.2, 0.4, nan]), ("max", [0.6, 0.4, nan])]:
        c = Combiner(how)  # type: ignore[arg-type]
        c.add(a)
        c.add(b)
        np.testing.assert_allclose(c.result().numpy(), expected, equal_nan=True)
