"""Slice figures from small synthetic stores: drawn, not blank, reading only the planes shown."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from pipeline_lib.io.volumes import create_array
from pipeline_lib.report import plot_slices
from pipeline_lib.report.slices import choose_planes, label_colours, read_plane


def png_pixels(path: Path) -> np.ndarray:
    assert path.stat().st_size > 1000
    return matplotlib.image.imread(str(path))[..., :3]


def test_slices_figure_is_drawn_and_not_blank(synthetic_run, tmp_path):
    out = tmp_path / "slices.png"
    planes = plot_slices(
        synthetic_run.volume, synthetic_run.prediction, synthetic_run.segmentations, out, title="m / d"
    )
    pixels = png_pixels(out)
    assert pixels.std() > 0.05  # images and colours, not an empty canvas
    assert [p.axis for p in planes] == [0, 0, 0, 1]  # three z-slices and one orthogonal slice
    # 5 columns (image, affinities, 2 segmentations, ground truth) side by side: wider than a 2-column figure
    narrow = tmp_path / "narrow.png"
    plot_slices(synthetic_run.volume, None, {}, narrow)
    assert pixels.shape[1] > 2 * png_pixels(narrow).shape[1]


def test_segmentation_colours_appear_over_the_image(synthetic_run, tmp_path):
    """The segmentation panel differs from the grey image: colour channels differ."""
    out = tmp_path / "seg.png"
    plot_slices(synthetic_run.volume, None, {"cc": synthetic_run.segmentations["cc"]}, out)
    pixels = png_pixels(out)
    colourfulness = np.abs(pixels[..., 0] - pixels[..., 1]) + np.abs(pixels[..., 1] - pixels[..., 2])
    assert colourfulness.mean() > 0.02


def test_mismatched_shapes_are_refused(synthetic_run, tmp_path):
    other = tmp_path / "other.zarr"
    create_array(other, "segmentation", (4, 8, 8), np.uint64, (4, 8, 8), (1, 1, 1))
    with pytest.raises(ValueError, match="does not match"):
        plot_slices(synthetic_run.volume, None, {"x": other}, tmp_path / "x.png")


def test_planes_are_windows_of_bounded_size():
    planes = choose_planes((300, 5000, 7000), n_z=3, max_extent=512)
    assert [p.index for p in planes] == [75, 150, 225, 2500]
    for plane in planes:
        for begin, end in plane.window:
            assert end - begin <= 512
    assert planes[-1].window == ((0, 300), (3244, 3756))  # zx plane: whole z (300 < 512), central x
    assert choose_planes((1, 10, 10))[0].index == 0  # a single section still has a z-slice


def test_read_plane_reads_the_window_only(tmp_path):
    array = create_array(tmp_path / "big.zarr", "image", (40, 1500, 1500), np.uint8, (8, 256, 256), (1, 1, 1))
    array[20, 700:710, 700:710] = 7  # every other chunk stays unwritten
    planes = choose_planes(array.shape, n_z=1, max_extent=100)
    xy = read_plane(array, planes[0])
    assert xy.shape == (100, 100) and xy.max() == 7
    zx = read_plane(array, planes[1])
    assert zx.shape == (40, 100)


def test_label_colours_are_stable_and_leave_background_clear():
    labels = np.array([[0, 1, 2], [2, 1, 2**40]], dtype=np.uint64)
    rgba = label_colours(labels)
    assert rgba.shape == (2, 3, 4)
    assert rgba[0, 0, 3] == 0 and (rgba[0, 1:, 3] > 0).all()
    np.testing.assert_array_equal(rgba[0, 2], rgba[1, 0])  # same id, same colour
    assert not np.allclose(rgba[0, 1, :3], rgba[0, 2, :3])  # neighbouring ids differ
    np.testing.assert_array_equal(label_colours(labels), rgba)


def test_mean_affinity_of_a_plane(synthetic_run):
    from pipeline_lib.io.volumes import open_array
    from pipeline_lib.report.figures import _mean_affinity

    affinities = open_array(synthetic_run.prediction, "affinities")
    plane = choose_planes(affinities.shape)[1]
    expected = affinities[:3, plane.index].astype(np.float32).mean(axis=0) / 255
    np.testing.assert_allclose(_mean_affinity(affinities, plane, [0, 1, 2]), expected, atol=1e-6)
    only_long = affinities[3, plane.index].astype(np.float32) / 255
    np.testing.assert_allclose(_mean_affinity(affinities, plane, [3]), only_long, atol=1e-6)
