import h5py
import numpy as np
import pytest

from pipeline_lib.config import DatasetSpec
from pipeline_lib.config.settings import Roi, SyntheticSpec
from pipeline_lib.data.assemble import assemble_dataset, dataset_shape
from pipeline_lib.data.synthetic import generate
from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import open_array, partial_path, store_attrs, voxel_size


def _spec(**kw) -> DatasetSpec:
    base = dict(name="d", voxel_size=(40.0, 4.0, 4.0), roles=("train",), image=None, labels=None, mask=None, synthetic=None, roi=None)
    base.update(kw)
    return DatasetSpec(**base)


def test_synthetic_assembles_to_ome_zarr(tmp_path):
    spec = _spec(synthetic=SyntheticSpec((16, 40, 40), 3, 14.0, 0.05))
    out = tmp_path / "d.zarr"
    assemble_dataset(spec, out, (8, 16, 16))
    expected = generate((16, 40, 40), 3, 14.0, 0.05)
    assert np.array_equal(open_array(out, "image")[:], expected.image)
    assert np.array_equal(open_array(out, "labels")[:], expected.labels)
    assert open_array(out, "image").chunks == (8, 16, 16)
    assert voxel_size(out, "labels") == (40.0, 4.0, 4.0)
    assert store_attrs(out)["provenance"]["stage"] == "assemble"
    assert not partial_path(out).exists()
    assert dataset_shape(spec) == (16, 40, 40)


def test_hdf5_with_roi_mask_and_signed_labels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (12, 30, 30), dtype=np.uint8)
    labels = rng.integers(0, 50, (12, 30, 30)).astype(np.int32)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = image
        f["gt"] = labels
        f["mask"] = (labels > 10).astype(np.uint8) * 255
    src = lambda key: {"format": "hdf5", "path": str(tmp_path / "v.h5"), "key": key}  # noqa: E731
    spec = _spec(image=src("raw"), labels=src("gt"), mask=src("mask"), roi=Roi((2, 5, 0), (8, 20, 30)))
    out = tmp_path / "v.zarr"
    assemble_dataset(spec, out, (4, 8, 8))
    region = (slice(2, 10), slice(5, 25), slice(0, 30))
    assert np.array_equal(open_array(out, "image")[:], image[region])
    assert open_array(out, "labels").dtype == np.uint32
    assert np.array_equal(open_array(out, "labels")[:], labels[region])
    assert np.array_equal(open_array(out, "mask")[:], (labels[region] > 10).astype(np.uint8))
    assert dataset_shape(spec) == (8, 20, 30)


def test_roi_outside_volume_and_failed_assembly_leaves_nothing(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = np.zeros((4, 8, 8), np.uint8)
    spec = _spec(image={"format": "hdf5", "path": str(tmp_path / "v.h5"), "key": "raw"}, roi=Roi((0, 0, 0), (4, 9, 8)))
    with pytest.raises(UserError, match="outside the volume"):
        assemble_dataset(spec, tmp_path / "v.zarr", (4, 8, 8))
    assert not (tmp_path / "v.zarr").exists() and not partial_path(tmp_path / "v.zarr").exists()
