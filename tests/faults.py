"""Shared pieces of the fault-matrix tests (``tests/test_faults*.py``): a tiny volume written
in every source format, a dataset config around it, and the check that a call fails with a
one-line :class:`~pipeline_lib.errors.UserError` naming what the user must fix."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from pipeline_lib.errors import UserError
from tests.conftest import TINY_DATASETS, tiny_config, write_yaml

SHAPE = (8, 24, 24)
Config = dict[str, Any]


def expect_user_error(call: Callable[[], object], *names: str) -> str:
    """``call`` raises a UserError whose one-line message contains every one of ``names``."""
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert "Traceback" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


def make_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, SHAPE, dtype=np.uint8)
    labels = (np.arange(np.prod(SHAPE)).reshape(SHAPE) // 500 + 1).astype(np.uint32)
    return image, labels


def write_source(folder: Path, fmt: str, array: np.ndarray, name: str) -> dict[str, Any]:
    """``array`` on disk in format ``fmt``; the source spec that reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "hdf5":
        with h5py.File(folder / f"{name}.h5", "w") as f:
            f.create_dataset("data", data=array, chunks=(4, 12, 12) if array.ndim == 3 else None)
        return {"format": "hdf5", "path": str(folder / f"{name}.h5"), "key": "data"}
    if fmt == "zarr":
        zarr.create_array(str(folder / f"{name}.zarr"), data=array, chunks=(4, 12, 12))
        return {"format": "zarr", "path": str(folder / f"{name}.zarr")}
    if fmt == "npy":
        np.save(folder / f"{name}.npy", array)
        return {"format": "npy", "path": str(folder / f"{name}.npy")}
    if fmt == "tiff":
        tifffile.imwrite(folder / f"{name}.tif", array, photometric="minisblack")
        return {"format": "tiff", "path": str(folder / f"{name}.tif")}
    if fmt == "png":
        (folder / name).mkdir()
        for z, plane in enumerate(array.astype(np.uint16 if array.dtype.itemsize > 1 else np.uint8)):
            iio.imwrite(folder / name / f"{z:03d}.png", plane)
        return {"format": "png", "glob": str(folder / name / "*.png")}
    assert fmt == "tiles"
    (folder / name).mkdir()
    tiles = []
    for z in (0, 4):
        np.save(folder / name / f"{z}.npy", array[z : z + 4])
        tiles.append({"file": f"{name}/{z}.npy", "offset": [z, 0, 0]})
    spec = {"shape": list(SHAPE), "dtype": str(array.dtype), "voxel_size": [1, 1, 1], "tiles": tiles}
    (folder / f"{name}.json").write_text(json.dumps(spec))
    return {"format": "tiles", "path": str(folder / f"{name}.json")}


FORMATS = ("hdf5", "zarr", "npy", "tiff", "png", "tiles")


def dataset_config(tmp_path: Path, image: dict[str, Any], labels: dict[str, Any], **extra: Any) -> Config:
    datasets = copy.deepcopy(TINY_DATASETS)
    datasets["datasets"]["real"] = {"image": image, "labels": labels, "voxel_size": [1, 1, 1], "roles": ["test"]}
    datasets["datasets"]["real"].update(extra)
    path = write_yaml(tmp_path / "datasets.yaml", datasets)
    config = tiny_config(path)
    config["datasets"] = ["tiny_train", "tiny_val", "real"]  # type: ignore[index]
    return config


def source_pair(tmp_path: Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    image, labels = make_volume()
    return write_source(tmp_path / "data", fmt, image, "image"), write_source(tmp_path / "data", fmt, labels, "labels")


def main_file(spec: dict[str, Any]) -> Path:
    if "glob" in spec:
        return sorted(Path(spec["glob"]).parent.glob("*.png"))[0]
    return Path(spec["path"])


def tiny_model(c: Config) -> Config:
    """The tiny config's model section (to edit in place)."""
    return c["models"]["tiny"]


def corrupt_middle(path: Path, length: int = 64) -> None:
    """Flip ``length`` bytes in the middle of ``path`` (a damaged chunk or file)."""
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2
    raw[start : start + length] = bytes(b ^ 0x5A for b in raw[start : start + length])
    path.write_bytes(bytes(raw))
