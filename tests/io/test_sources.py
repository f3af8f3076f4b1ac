"""Tests for pipeline_lib.io.sources: every format opens, reads sub-regions lazily, fails clearly."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from pipeline_lib.io import sources
from pipeline_lib.io.sources import SourceError, VolumeSource, open_source, source_files

REGION = (slice(1, 4), slice(2, 7), slice(3, 11))
GALA_DIR = Path(os.environ.get("GALA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared/data/gala"))


@pytest.fixture
def vol() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, (5, 9, 13)).astype(np.uint16)


def _write(fmt: str, vol: np.ndarray, d: Path) -> dict:
    """Write ``vol`` in format ``fmt`` under ``d``; return the spec (paths relative to d)."""
    if fmt == "hdf5":
        with h5py.File(d / "v.h5", "w") as f:
            f.create_dataset("grp/stack", data=vol, chunks=(2, 4, 4), compression="lzf")
        return {"format": "hdf5", "path": "v.h5", "key": "grp/stack"}
    if fmt == "zarr":
        g = zarr.open_group(d / "v.zarr", mode="w")
        g.create_array("image", shape=vol.shape, dtype=vol.dtype, chunks=(2, 4, 4))[:] = vol
        return {"format": "zarr", "path": "v.zarr", "array": "image"}
    if fmt == "npy":
        np.save(d / "v.npy", vol)
        return {"format": "npy", "path": "v.npy"}
    if fmt in ("tiff", "tiff-zlib"):
        tifffile.imwrite(d / "v.tif", vol, compression="zlib" if fmt == "tiff-zlib" else None)
        return {"format": "tiff", "path": "v.tif"}
    (d / "s").mkdir()
    ext = "png" if fmt == "png" else "tif"
    for z, sl in enumerate(vol):
        (iio.imwrite if ext == "png" else tifffile.imwrite)(d / "s" / f"{z:03d}.{ext}", sl)
    return {"format": "png" if ext == "png" else "tiff", "glob": f"s/*.{ext}"}


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "npy", "tiff", "tiff-zlib", "png", "tiff-glob"])
def test_each_format_reads_subregions(fmt: str, vol: np.ndarray, tmp_path: Path) -> None:
    spec = _write(fmt, vol, tmp_path)
    src = open_source(spec, tmp_path)
    assert isinstance(src, VolumeSource)
    assert src.shape == vol.shape and src.dtype == vol.dtype
    np.testing.assert_array_equal(src.read(REGION), vol[REGION])
    np.testing.assert_array_equal(src.read((slice(None),) * 3), vol)
    np.testing.assert_array_equal(src.read((slice(4, 5), slice(0, 1), slice(12, 99))), vol[4:5, 0:1, 12:])
    assert src.read((slice(2, 2), slice(None), slice(None))).shape == (0, 9, 13)
    files = source_files(spec, tmp_path)
    assert files and all(f.exists() for f in files)


@pytest.mark.parametrize(
    "fmt, unit",
    [("hdf5", (2, 4, 4)), ("zarr", (2, 4, 4)), ("npy", None), ("tiff", (1, 9, 13)), ("png", (1, 9, 13))],
)
def test_read_unit_names_what_a_read_decodes_whole(fmt: str, unit, vol: np.ndarray, tmp_path: Path) -> None:
    assert open_source(_write(fmt, vol, tmp_path), tmp_path).read_unit == unit


def test_contiguous_hdf5_has_no_read_unit(vol: np.ndarray, tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["stack"] = vol
    assert open_source({"format": "hdf5", "path": "c.h5"}, tmp_path).read_unit is None


def test_png_decoding_matches_imageio_for_every_mode(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    grey, rgba = rng.integers(0, 256, (7, 9), dtype=np.uint8), rng.integers(0, 256, (7, 9, 4), dtype=np.uint8)
    images = {
        "L": Image.fromarray(grey), "RGB": Image.fromarray(rgba[..., :3]), "RGBA": Image.fromarray(rgba),
        "I;16": Image.fromarray(rng.integers(0, 65536, (7, 9), dtype=np.uint16)),
        "1": Image.fromarray(grey).convert("1"), "P": Image.fromarray(rgba[..., :3]).convert("P"),
        "LA": Image.fromarray(rgba[..., :2], "LA"),
    }  # fmt: skip
    for mode, image in images.items():
        image.save(tmp_path / f"{mode}.png")
        with Image.open(tmp_path / f"{mode}.png") as im:
            assert im.mode == mode
        expected = iio.imread(tmp_path / f"{mode}.png")
        got = sources.read_file(tmp_path / f"{mode}.png")
        assert got.dtype == expected.dtype and got.flags.writeable, mode
        np.testing.assert_array_equal(got, expected[np.newaxis])


def test_absolute_paths_and_base_dir(vol: np.ndarray, tmp_path: Path) -> None:
    spec = _write("npy", vol, tmp_path)
    src = open_source({**spec, "path": str(tmp_path / "v.npy")}, Path("/nonexistent"))
    np.testing.assert_array_equal(src.read(REGION), vol[REGION])


def test_png_glob_reads_only_needed_slices(vol: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    src = open_source(_write("png", vol, tmp_path), tmp_path)
    seen: list[str] = []
    real = sources.read_file
    monkeypatch.setattr(sources, "read_file", lambda p, *a: seen.append(p.name) or real(p, *a))
    src.read((slice(2, 4), slice(None), slice(None)))
    assert seen == ["002.png", "003.png"]


def test_compressed_tiff_reads_only_needed_pages(vol: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    src = open_source(_write("tiff-zlib", vol, tmp_path), tmp_path)
    keys: list = []
    real = tifffile.TiffFile.asarray

    def spy(self, key=None, **kw):
        keys.append(key)
        return real(self, key=key, **kw)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", spy)
    np.testing.assert_array_equal(src.read(REGION), vol[REGION])
    assert keys == [range(1, 4)]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"format": "hdf5", "path": "nope.h5", "key": "x"}, r"nope\.h5: file not found"),
        ({"format": "hdf5", "path": "v.h5", "key": "missing"}, r"v\.h5: no HDF5 dataset 'missing'"),
        ({"format": "zarr", "path": "v.zarr", "array": "labels"}, r"v\.zarr: expected array 'labels'"),
        ({"format": "npy", "path": "flat.npy"}, r"flat\.npy: expected a 3-D"),
        ({"format": "png", "glob": "none/*.png"}, r"none/\*\.png: glob matches no files"),
        ({"format": "png", "glob": "mixed/*.png"}, r"mixed/b\.png: slice shape"),
        ({"format": "png", "glob": "rgb/*.png"}, r"rgb/a\.png: expected a single-channel 2-D"),
        ({"format": "hdf5", "path": "v.h5", "keyy": "x"}, r"keys \['keyy'\] do not apply"),
        ({"format": "jpeg", "path": "v.jpg"}, r"'format' must be one of"),
        ({"format": "tiff", "path": "a.tif", "glob": "*.tif"}, r"exactly one of path, glob"),
        ({"format": "npy"}, r"missing 'path'"),
    ],
)
def test_errors_name_the_file(spec: dict, match: str, vol: np.ndarray, tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["stack"] = vol
    zarr.open_group(tmp_path / "v.zarr", mode="w").create_array("image", shape=(2, 2, 2), dtype="u1")
    np.save(tmp_path / "flat.npy", vol[0])
    for sub, shapes in (("mixed", [(4, 5), (4, 6)]), ("rgb", [(4, 5, 3)])):
        (tmp_path / sub).mkdir()
        for name, shape in zip("ab", shapes, strict=False):
            iio.imwrite(tmp_path / sub / f"{name}.png", np.zeros(shape, np.uint8))
    with pytest.raises(SourceError, match=match):
        open_source(spec, tmp_path)


def test_source_files_lists_missing_files_too(tmp_path: Path) -> None:
    assert source_files({"format": "hdf5", "path": "x.h5", "key": "k"}, tmp_path) == [tmp_path / "x.h5"]
    assert source_files({"format": "tiles", "path": "t.json"}, tmp_path) == [tmp_path / "t.json"]
    (tmp_path / "t.json").write_text(
        '{"shape": [1, 2, 2], "dtype": "uint8", "tiles": [{"file": "a.npy", "offset": [0, 0, 0]}]}'
    )
    assert source_files({"format": "tiles", "path": "t.json"}, tmp_path) == [tmp_path / "t.json", tmp_path / "a.npy"]


def test_tiles_format_goes_through_open_source(tmp_path: Path) -> None:
    vol = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.save(tmp_path / "a.npy", vol)
    (tmp_path / "t.json").write_text(
        '{"shape": [2, 4, 6], "dtype": "uint8", "tiles": [{"file": "a.npy", "offset": [0, 0, 2]}]}'
    )
    src = open_source({"format": "tiles", "path": "t.json", "fill_value": 7}, tmp_path)
    out = src.read((slice(None),) * 3)
    np.testing.assert_array_equal(out[:, :, 2:], vol)
    assert (out[:, :, :2] == 7).all()


@pytest.mark.gala
@pytest.mark.skipif(not GALA_DIR.is_dir(), reason="gala crops not present")
@pytest.mark.parametrize("name", ["train-image.h5", "train-gt.lzf.h5", "test-image.h5", "test-gt.lzf.h5"])
def test_gala_crops_open(name: str) -> None:
    src = open_source({"format": "hdf5", "path": name, "key": "stack"}, GALA_DIR)
    assert src.shape == (50, 100, 200)
    assert src.dtype == (np.int32 if "gt" in name else np.uint8)
    block = src.read((slice(10, 12), slice(0, 30), slice(50, 90)))
    with h5py.File(GALA_DIR / name, "r") as f:
        np.testing.assert_array_equal(block, f["stack"][10:12, 0:30, 50:90])
