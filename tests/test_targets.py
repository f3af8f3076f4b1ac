"""Targets against hand-computed values (the affinity convention of docs/conventions.md)."""

import numpy as np
import pytest

from pipeline_lib.targets import (
    affinities,
    boundary_map,
    compute_targets,
    distance_map,
    foreground,
    local_shape_descriptors,
    max_offset,
)


def test_affinity_x_example_from_design():
    labels = np.array([[[1, 1, 2]]])
    aff, mask = affinities(labels, [(0, 0, -1)])
    np.testing.assert_array_equal(aff[0, 0, 0], [0, 1, 0])
    np.testing.assert_array_equal(mask[0, 0, 0], [0, 1, 1])


def test_affinity_label_zero_is_never_connected():
    labels = np.array([[[0, 0, 3, 3, 0]]])
    aff, mask = affinities(labels, [(0, 0, -1)])
    np.testing.assert_array_equal(aff[0, 0, 0], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(mask[0, 0, 0], [0, 1, 1, 1, 1])


def test_affinity_long_range_and_borders():
    # x: labels 1 1 1 2 2 2; offset -3 along x compares v with v-3.
    labels = np.array([[[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1]]])
    aff, mask = affinities(labels, [(0, 0, -3), (0, -1, 0)])
    np.testing.assert_array_equal(aff[0, 0, 0], [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(aff[0, 0, 1], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(mask[0, 0, 0], [0, 0, 0, 1, 1, 1])
    # y offset: row 0 has no partner (masked); row 1 vs row 0.
    np.testing.assert_array_equal(aff[1, 0, 0], [0] * 6)
    np.testing.assert_array_equal(mask[1, 0, 0], [0] * 6)
    np.testing.assert_array_equal(aff[1, 0, 1], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(mask[1, 0, 1], [1] * 6)


def test_affinity_z_and_diagonal_offset():
    labels = np.zeros((3, 2, 2), dtype=np.uint64)
    labels[0], labels[1], labels[2] = 5, 5, 7
    aff, mask = affinities(labels, [(-1, 0, 0), (-2, -1, 0)])
    assert aff[0, 0].sum() == 0 and mask[0, 0].sum() == 0
    assert aff[0, 1].all() and not aff[0, 2].any()
    # (-2, -1, 0): only z = 2, y = 1 has a partner (z = 0, y = 0): labels 7 vs 5.
    assert mask[1].sum() == 2 and mask[1, 2, 1].all() and aff[1].sum() == 0


def test_affinity_rejects_positive_offsets_and_max_offset():
    with pytest.raises(ValueError, match="positive"):
        affinities(np.ones((2, 2, 2), int), [(0, 1, 0)])
    assert max_offset([(-1, 0, 0), (0, -9, 0), (0, 0, -3)]) == (1, 9, 3)


def test_boundary_map_by_hand():
    labels = np.array([[[1, 1, 2, 0]]])
    np.testing.assert_array_equal(boundary_map(labels)[0, 0], [0, 1, 1, 1])
    labels = np.array([[[1, 1, 2]]])
    np.testing.assert_array_equal(boundary_map(labels)[0, 0], [0, 1, 1])
    # A z neighbour with another label makes a boundary too.
    labels = np.array([[[4, 4]], [[4, 6]]])
    # z=0: 4 4 (x=1 touches the 6 below it); z=1: 4 6 (x-neighbours differ).
    np.testing.assert_array_equal(boundary_map(labels), [[[0, 1]], [[1, 1]]])


def test_foreground_and_distance():
    labels = np.zeros((1, 7, 7), dtype=np.uint32)
    labels[0, 1:6, 1:6] = 3
    np.testing.assert_array_equal(foreground(labels), labels > 0)
    dist = distance_map(labels, scale=1.0)
    # Ring 1:6 is boundary (touches 0); the centre (3, 3) is 2 voxels from the ring at 1.
    assert dist[0, 1, 1] == 0 and dist[0, 0, 0] == 0
    assert dist[0, 2, 2] == pytest.approx(np.tanh(1.0))
    assert dist[0, 3, 3] == pytest.approx(np.tanh(2.0))
    assert dist.max() == dist[0, 3, 3]


def test_compute_targets_stacks_channels_and_applies_mask():
    labels = np.ones((2, 4, 4), dtype=np.uint64)
    labels[:, :, 2:] = 2
    mask = np.ones(labels.shape, bool)
    mask[1] = False
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    target, weight = compute_targets(labels, mask, ["affinity", "boundary", "foreground", "distance"], offsets)
    assert target.shape == weight.shape == (6, 2, 4, 4)
    np.testing.assert_array_equal(target[:3], affinities(labels, offsets)[0])
    np.testing.assert_array_equal(target[3], boundary_map(labels))
    assert weight[:, 1].sum() == 0
    assert weight[3:, 0].all()
    assert set(np.unique(target[:5])) <= {0.0, 1.0}


def test_local_shape_descriptors_of_a_slab_point_at_its_centre():
    """One object filling z < 4 of an 8-voxel cube: along z its voxels' mean offset points to the
    slab's middle (above 0.5 in the lower half, below in the upper), and label 0 has no descriptor."""
    labels = np.zeros((8, 8, 8), dtype=np.int32)
    labels[:4] = 1
    lsds = local_shape_descriptors(labels, sigma=3.0, downsample=1)
    assert lsds.shape == (10, 8, 8, 8) and lsds.dtype == np.float32
    assert lsds.min() >= 0.0 and lsds.max() <= 1.0
    assert np.all(lsds[:, 4:] == 0.0)
    mean_z = lsds[0, :4, 4, 4]
    assert mean_z[0] > 0.5 > mean_z[3]
    np.testing.assert_allclose(lsds[1, :4, 4, 4], lsds[2, :4, 4, 4])  # y and x alike, as the object is


def test_lsd_target_channels_and_divisibility():
    labels = np.ones((4, 6, 6), dtype=np.int32)
    target, weight = compute_targets(
        labels, np.ones_like(labels, bool), ["affinity", "lsd"], [[0, 0, -1]], lsd_downsample=2
    )
    assert target.shape == (1 + 10, 4, 6, 6) and weight[1:].min() == 1.0
    with pytest.raises(ValueError, match="lsd_downsample 4"):
        local_shape_descriptors(labels, 3.0, 4)


@pytest.mark.parametrize("downsample", [1, 2])
def test_local_shape_descriptors_equal_lsd_lite_on_the_whole_array(downsample):
    from lsd_lite import get_lsds

    labels = np.random.default_rng(0).integers(0, 5, size=(4, 4, 4)).repeat(4, 0).repeat(4, 1).repeat(4, 2)
    labels[:, :, 7] = 0
    expected = get_lsds(labels.astype(np.uint64), sigma=2.0, downsample=downsample)
    np.testing.assert_allclose(local_shape_descriptors(labels, 2.0, downsample), expected, atol=1e-5)


def test_label_zero_ignored_drops_every_edge_touching_it():
    labels = np.array([[[1, 1, 0, 2, 2]]])
    mask = np.ones(labels.shape, bool)
    target, weight = compute_targets(labels, mask, ["affinity", "foreground"], [[0, 0, -1]], ignore_zero=True)
    np.testing.assert_array_equal(target[0, 0, 0], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(weight[0, 0, 0], [0, 1, 0, 0, 1])  # 1-0 and 0-2 edges do not count
    np.testing.assert_array_equal(weight[1, 0, 0], [1, 1, 0, 1, 1])  # nor does the 0 voxel itself
    _, as_boundary = compute_targets(labels, mask, ["affinity"], [[0, 0, -1]])
    np.testing.assert_array_equal(as_boundary[0, 0, 0], [0, 1, 1, 1, 1])
