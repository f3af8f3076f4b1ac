"""Image evidence: image affinities by hand and against an independent computation, blockwise
equal to the whole volume, and graph decoders that split what only the image separates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decoding_helpers import (
    LONG_OFFSETS,
    NN_OFFSETS,
    decode_settings,
    read_segmentation,
    same_partition,
    write_affinities,
)
from scipy.ndimage import gaussian_filter

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding.blockwise import decode_volume
from pipeline_lib.decoding.image_evidence import image_affinities, mixed, with_image_evidence
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.decoding.sweep import segmentations, sweep
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.geometry import Box
from pipeline_lib.io.affinities import as_float
from pipeline_lib.io.volumes import create_array
from pipeline_lib.targets import affinities


def test_image_affinities_by_hand() -> None:
    """Without smoothing: the darker of an edge's two voxels; a far end outside the volume: the voxel itself."""
    image = np.array([[[0, 255, 51]]], dtype=np.uint8)  # (1, 1, 3): intensities 0, 1, 0.2 along x
    out = image_affinities(image, Box.from_shape(image.shape), [[0, 0, -1], [0, 0, 2], [-1, 0, 0]], 0.0)
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.0, 0.2])  # x=0's far end is outside: its own 0
    np.testing.assert_allclose(out[1, 0, 0], [0.0, 1.0, 0.2])  # x=1, 2 reach beyond x=2: their own values
    np.testing.assert_allclose(out[2, 0, 0], [0.0, 1.0, 0.2])  # z-1 is outside for every voxel


def expected_affinities(image: np.ndarray, offsets: list[list[int]], sigma: float) -> np.ndarray:
    """The definition, computed on the whole volume by index arithmetic."""
    smooth = gaussian_filter(image.astype(np.float32) / 255, sigma, mode="nearest")
    grid = np.indices(image.shape)
    out = []
    for offset in offsets:
        far = [g + c for g, c in zip(grid, offset, strict=True)]
        outside = np.zeros(image.shape, dtype=bool)
        for f, n in zip(far, image.shape, strict=True):
            outside |= (f < 0) | (f >= n)
        clamped = tuple(np.clip(f, 0, n - 1) for f, n in zip(far, image.shape, strict=True))
        out.append(np.minimum(smooth, np.where(outside, smooth, smooth[clamped])))
    return np.stack(out)


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0])
def test_image_affinities_of_any_box_equal_the_whole_volumes(sigma: float) -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 20, 18)).astype(np.uint8)
    offsets = [*LONG_OFFSETS, [0, 0, -9], [0, 2, 0]]
    whole = expected_affinities(image, offsets, sigma)
    np.testing.assert_allclose(image_affinities(image, Box.from_shape(image.shape), offsets, sigma), whole, atol=1e-6)
    for box in (Box((3, 5, 4), (9, 13, 11)), Box((0, 0, 10), (12, 7, 18)), Box((11, 19, 17), (12, 20, 18))):
        part = image_affinities(image, box, offsets, sigma)  # the same computation on any box: bit-exact
        np.testing.assert_array_equal(
            part, image_affinities(image, Box.from_shape(image.shape), offsets, sigma)[(slice(None), *box.slices)]
        )


def test_mixed_weighs_predictions_and_image() -> None:
    predicted, image = np.full((3, 2, 2, 2), 0.8, np.float32), np.full((3, 2, 2, 2), 0.4, np.float32)
    assert mixed(predicted, image, 0.0) is not image and np.all(mixed(predicted, image, 0.0) == predicted)
    np.testing.assert_allclose(mixed(predicted, image, 0.25), 0.7)
    np.testing.assert_allclose(mixed(predicted, image, 1.0), 0.4)
    decoder = decoder_settings({"method": "waterz", "params": {"image_weight": 0.5}})
    with pytest.raises(ValueError, match="image_weight 0.5 but no image"):
        with_image_evidence(predicted, NN_OFFSETS, decoder, None, Box.from_shape((2, 2, 2)))
    with pytest.raises(ValueError, match="predictions alone"):
        decode_array(predicted, NN_OFFSETS, decoder)


def two_cells(root: Path) -> tuple[Path, Path, np.ndarray]:
    """Predictions that see one object (every affinity 0.9) and an image with a dark plane at x = 12
    between two bright halves; labels: the two halves (the plane 0)."""
    shape = (8, 16, 24)
    labels = np.ones(shape, dtype=np.uint32)
    labels[:, :, 12:] = 2
    labels[:, :, 12] = 0
    image = np.full(shape, 200, dtype=np.uint8)
    image[:, :, 12] = 10
    volume = root / "volume.zarr"
    create_array(volume, "labels", shape, labels.dtype, shape, (8.0, 8.0, 8.0))[...] = labels
    create_array(volume, "image", shape, image.dtype, shape, (8.0, 8.0, 8.0))[...] = image
    affinities = write_affinities(root / "affs.zarr", np.full((3, *shape), 0.9), NN_OFFSETS, (8, 8, 8), dtype="uint8")
    return affinities, volume, labels


@pytest.mark.parametrize("method", ["waterz", "mutex_watershed"])
def test_the_image_splits_what_the_predictions_merge_whole_and_blockwise(tmp_path: Path, method: str) -> None:
    affinities, volume, labels = two_cells(tmp_path)
    plain = decoder_settings({"method": method, "threshold": 0.6, "params": {"min_seed_distance": 4}})
    with_image = decoder_settings(
        {"method": method, "threshold": 0.6, "params": {"min_seed_distance": 4, "image_weight": 0.5, "image_sigma": 0}}
    )
    decode_volume(affinities, tmp_path / "plain.zarr", plain, decode_settings((8, 8, 8)), volume)
    assert len(np.unique(read_segmentation(tmp_path / "plain.zarr"))) == 1
    decode_volume(affinities, tmp_path / "image.zarr", with_image, decode_settings((8, 8, 8)), volume)
    segmentation = read_segmentation(tmp_path / "image.zarr")
    left, right = segmentation[:, :, :12], segmentation[:, :, 13:]
    assert len(np.unique(left)) == len(np.unique(right)) == 1 and left.flat[0] != right.flat[0]
    stored = np.full((3, *labels.shape), 0.9, np.float32)
    image = np.full(labels.shape, 200, np.uint8)
    image[:, :, 12] = 10
    ((_, whole),) = segmentations(stored, NN_OFFSETS, with_image, [0.6], image)
    assert len(np.unique(whole[:, :, :12])) == len(np.unique(whole[:, :, 13:])) == 1
    assert whole[0, 0, 0] != whole[0, 0, -1]
    with pytest.raises(ValueError, match="no image"):
        decode_volume(affinities, tmp_path / "none.zarr", with_image, decode_settings((8, 8, 8)))


def test_a_partial_store_decoded_with_another_image_at_the_same_path_is_replaced(tmp_path: Path) -> None:
    from pipeline_lib.decoding.blockwise import decode_blocks, prepare_decoding
    from pipeline_lib.io.volumes import open_array, partial_path, set_store_attrs

    affinities, volume, _ = two_cells(tmp_path)
    set_store_attrs(volume, {"provenance": {"created": "first assembly"}})
    decoder = decoder_settings(
        {
            "method": "waterz",
            "threshold": 0.6,
            "params": {"min_seed_distance": 4, "image_weight": 0.5, "image_sigma": 0},
        }
    )
    out, settings = tmp_path / "seg.zarr", decode_settings((8, 8, 8))
    prepare_decoding(affinities, partial_path(out), decoder, settings, volume)
    decode_blocks(affinities, partial_path(out), range(6), decoder, volume)  # interrupted after decoding
    # The volume is assembled again at the same path, without the dark plane: the blocks
    # decoded with the old image must not be reused (they would split the volume).
    open_array(volume, "image", mode="r+")[...] = 200
    set_store_attrs(volume, {"provenance": {"created": "second assembly"}})
    decode_volume(affinities, out, decoder, settings, volume)
    assert len(np.unique(read_segmentation(out))) == 1


def test_the_sweep_reads_the_image_of_the_validation_volume(tmp_path: Path) -> None:
    affinities, volume, _ = two_cells(tmp_path)
    decoder = decoder_settings(
        {"method": "waterz", "params": {"min_seed_distance": 4, "image_weight": 0.5, "image_sigma": 0}}
    )
    plain = decoder_settings({"method": "waterz", "params": {"min_seed_distance": 4}})
    grid = [0.3, 0.6, 0.8]
    best = sweep(affinities, volume, decoder, grid, tmp_path / "i.csv", tmp_path / "i.png")
    best_plain = sweep(affinities, volume, plain, grid, tmp_path / "p.csv", tmp_path / "p.png")
    assert best["arand"] == pytest.approx(0.0, abs=1e-9) and best["n_seg_objects"] == 2
    assert best_plain["arand"] > 0.3 and best_plain["n_seg_objects"] == 1  # two equal halves merged: 1/3


@pytest.mark.parametrize("method", ["waterz", "mutex_watershed", "seeded_watershed"])
def test_with_an_image_one_block_equals_the_whole_array_and_blocks_stay_close(tmp_path: Path, method: str) -> None:
    """Noisy predictions of a synthetic volume and its image: through the pipeline as one block
    the segmentation is the whole-array one; in two blocks it stays within ARAND 0.02 of it
    (only fragments near block faces depend on the grid: without the image the same split
    deviates by 0.0002-0.004); a wrong-shaped image is refused."""
    synthetic = generate((16, 48, 48), seed=3, cell_size=10)
    affs, _ = affinities(synthetic.labels, LONG_OFFSETS)
    noisy = np.clip(affs + np.random.default_rng(3).normal(0.0, 0.3, affs.shape), 0.0, 1.0)
    stored = as_float(np.round(noisy * 255).astype(np.uint8))
    store = write_affinities(tmp_path / "affs.zarr", stored, LONG_OFFSETS, (8, 24, 24), "uint8")
    volume = tmp_path / "volume.zarr"
    create_array(volume, "image", synthetic.image.shape, np.uint8, (8, 24, 24), (8.0, 8.0, 8.0))[...] = synthetic.image
    decoder = decoder_settings({"method": method, "threshold": 0.6, "params": {"image_weight": 0.5}})
    ((_, whole),) = segmentations(stored, LONG_OFFSETS, decoder, [0.6], synthetic.image)
    ((_, alone),) = segmentations(stored, LONG_OFFSETS, decoder_settings({"method": method, "threshold": 0.6}), [0.6])
    assert not same_partition(whole, alone)  # the image changes the result
    decode_volume(store, tmp_path / "one.zarr", decoder, decode_settings((16, 48, 48)), volume)
    assert same_partition(read_segmentation(tmp_path / "one.zarr"), whole)
    decode_volume(store, tmp_path / "two.zarr", decoder, decode_settings((16, 24, 48)), volume)
    assert evaluate_arrays(read_segmentation(tmp_path / "two.zarr"), whole.astype(np.uint64)).arand < 0.02
    wrong = tmp_path / "wrong.zarr"
    create_array(wrong, "image", (16, 48, 40), np.uint8, (16, 48, 40), (8.0, 8.0, 8.0))[...] = 0
    with pytest.raises(ValueError, match="image shape"):
        decode_volume(store, tmp_path / "wrong_out.zarr", decoder, decode_settings((16, 48, 48)), wrong)
