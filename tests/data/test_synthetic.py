import numpy as np

from pipeline_lib.data.synthetic import MIN_CELL_VOXELS, generate


def test_same_seed_same_volume_other_seed_other_volume():
    a = generate((16, 48, 48), seed=5)
    b = generate((16, 48, 48), seed=5)
    c = generate((16, 48, 48), seed=6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_labels_are_dense_cells_separated_by_dark_membranes():
    v = generate((24, 64, 64), seed=1)
    assert v.image.dtype == np.uint8 and v.labels.dtype == np.uint32
    ids, counts = np.unique(v.labels, return_counts=True)
    assert ids[0] == 0 and (ids[1:] == np.arange(1, len(ids))).all()  # consecutive
    assert len(ids) > 10
    assert counts[1:].min() >= MIN_CELL_VOXELS
    membrane_fraction = counts[0] / v.labels.size
    assert 0.05 < membrane_fraction < 0.35
    # membranes are darker than cell interiors
    assert v.image[v.labels == 0].mean() < v.image[v.labels > 0].mean() - 30
    # no two different cells touch along an axis: a membrane voxel always separates them
    for axis in range(3):
        a = np.moveaxis(v.labels, axis, 0)
        touching = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        assert not touching.any()
