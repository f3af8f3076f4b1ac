"""The fault matrix (see ``tests/test_faults.py``) for sources: every format's missing, wrong
and corrupt files, tile JSON faults, and faults only the voxels show."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr

from pipeline_lib.data.assemble import assemble_dataset
from pipeline_lib.errors import UserError
from pipeline_lib.workflow import Plan
from tests.conftest import TINY_DATASETS, write_yaml
from tests.faults import (
    FORMATS,
    SHAPE,
    Config,
    corrupt_middle,
    dataset_config,
    expect_user_error,
    main_file,
    make_volume,
    source_pair,
    write_source,
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_and_assembles(tmp_path: Path, fmt: str) -> None:
    image, labels = source_pair(tmp_path, fmt)
    plan = Plan.from_config(dataset_config(tmp_path, image, labels), check_networks=False)
    assert plan.shapes["real"] == SHAPE
    out = tmp_path / "real.zarr"
    assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12))
    provenance = zarr.open_group(str(out), mode="r").attrs["provenance"]
    assert str(main_file(image).resolve()) in provenance["inputs"]  # type: ignore[index,operator]
    if fmt == "tiles":  # every tile is an input too
        assert str((tmp_path / "data" / "labels" / "4.npy").resolve()) in provenance["inputs"]  # type: ignore[index,operator]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_source_file_is_caught_at_start(tmp_path: Path, fmt: str) -> None:
    image, labels = source_pair(tmp_path, fmt)
    gone = main_file(labels)
    if gone.is_dir():
        import shutil

        shutil.rmtree(gone)
    elif fmt == "png":
        for f in gone.parent.glob("*.png"):
            f.unlink()
    else:
        gone.unlink()
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "'real'", "labels")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_garbled_source_header_names_the_file(tmp_path: Path, fmt: str) -> None:
    image, labels = source_pair(tmp_path, fmt)
    bad = main_file(image)
    named = bad.name
    if bad.is_dir():  # zarr: its metadata
        bad = bad / "zarr.json"
    bad.write_bytes(b"\x00garbage\xff" * 8)
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), named, "'real' image")


@pytest.mark.parametrize(("fmt", "key"), [("hdf5", "key"), ("zarr", "array")])
def test_a_wrong_key_names_the_file_and_the_key(tmp_path: Path, fmt: str, key: str) -> None:
    image, labels = source_pair(tmp_path, fmt)
    labels[key] = "nope"
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), Path(labels["path"]).name, "nope")


@pytest.mark.parametrize("fmt", ["hdf5", "npy", "tiff"])
def test_a_2d_file_where_a_volume_is_expected(tmp_path: Path, fmt: str) -> None:
    image, _ = source_pair(tmp_path, fmt)
    flat = write_source(tmp_path / "flat", fmt, np.zeros((4, 24, 24), np.uint32)[0][None][0], "labels")
    config = dataset_config(tmp_path, image, flat)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "labels")


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "npy"])
def test_image_and_labels_of_different_shapes(tmp_path: Path, fmt: str) -> None:
    image, _ = source_pair(tmp_path, fmt)
    labels = write_source(tmp_path / "other", fmt, np.ones((8, 24, 20), np.uint32), "labels")
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "'real'", "shapes differ", "[8, 24, 20]")


def test_float_labels_are_caught_at_start_naming_the_file(tmp_path: Path) -> None:
    image, _ = source_pair(tmp_path, "hdf5")
    labels = write_source(tmp_path / "float", "hdf5", np.ones(SHAPE, np.float32), "labels")
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "'real' labels", "labels.h5", "float32")


@pytest.mark.parametrize(
    ("roi", "names"),
    [
        ({"begin": [4, 0, 0], "shape": [8, 24, 24]}, ("'real'", "outside the volume", "[8, 24, 24]")),
        ({"begin": [0, 0, 0], "shape": [0, 24, 24]}, ("'real'", "roi shape [0, 24, 24] is empty")),
        ({"begin": [0, 30, 0], "shape": [1, 1, 1]}, ("'real'", "outside")),
    ],
    ids=["past the end", "empty", "begins outside"],
)
def test_a_bad_roi_is_caught_at_start(tmp_path: Path, roi: dict[str, Any], names: tuple[str, ...]) -> None:
    image, labels = source_pair(tmp_path, "npy")
    config = dataset_config(tmp_path, image, labels, roi=roi)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), *names)


def test_a_synthetic_roi_outside_is_caught_at_start(tiny_run: tuple[Path, Config]) -> None:
    tmp, config = tiny_run
    datasets = copy.deepcopy(TINY_DATASETS)
    datasets["datasets"]["tiny_test"]["roi"] = {"begin": [20, 0, 0], "shape": [10, 64, 64]}
    config["datasets_file"] = str(write_yaml(tmp / "datasets.yaml", datasets))
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "'tiny_test'", "outside")


# --- tile JSON faults ---------------------------------------------------------------------


def _tiles(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    image, labels = source_pair(tmp_path, "tiles")
    return image, labels, Path(labels["path"])


TILE_FAULTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing field": lambda j: j.pop("dtype"),
    "unknown dtype": lambda j: j.update(dtype="float128x"),
    "tile outside the volume": lambda j: j["tiles"][1].update(offset=[6, 0, 0]),
    "tile file missing": lambda j: j["tiles"][1].update(file="labels/absent.npy"),
    "shape of 2 axes": lambda j: j.update(shape=[8, 24]),
}


@pytest.mark.parametrize("case", sorted(TILE_FAULTS))
def test_tile_json_faults_name_the_json(tmp_path: Path, case: str) -> None:
    image, labels, path = _tiles(tmp_path)
    data = json.loads(path.read_text())
    TILE_FAULTS[case](data)
    path.write_text(json.dumps(data))
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "labels")


def test_a_tile_json_that_is_not_json(tmp_path: Path) -> None:
    image, labels, path = _tiles(tmp_path)
    path.write_text("{ not json")
    config = dataset_config(tmp_path, image, labels)
    expect_user_error(lambda: Plan.from_config(config, check_networks=False), "labels.json")


# --- faults only the voxels show: caught by the assemble job, nothing published ------------


def _assemble_fails(tmp_path: Path, config: Config, *names: str) -> None:
    plan = Plan.from_config(config, check_networks=False)
    out = tmp_path / "results" / "real.zarr"
    expect_user_error(lambda: assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12)), "'real'", *names)
    assert not out.exists() and not out.with_name("real.zarr.partial").exists()


@pytest.mark.parametrize("fmt", ["hdf5", "npy", "zarr"])
def test_all_zero_labels_are_refused_by_assembly(tmp_path: Path, fmt: str) -> None:
    image, _ = source_pair(tmp_path, fmt)
    labels = write_source(tmp_path / "zero", fmt, np.zeros(SHAPE, np.uint32), "labels")
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "labels", "all 0")


def test_negative_labels_are_refused_naming_the_file(tmp_path: Path) -> None:
    image, _ = source_pair(tmp_path, "npy")
    labels = write_source(tmp_path / "neg", "npy", np.full(SHAPE, -3, np.int32), "labels")
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "labels.npy", "negative")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_image_values_are_refused_naming_the_file(tmp_path: Path, bad: float) -> None:
    _, labels = source_pair(tmp_path, "hdf5")
    values = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    values[5, 20, 3] = bad
    image = write_source(tmp_path / "nan", "hdf5", values, "image")
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "image.h5", "non-finite")


def test_a_damaged_hdf5_chunk_names_the_file_and_key(tmp_path: Path) -> None:
    image, _ = source_pair(tmp_path, "hdf5")
    with h5py.File(tmp_path / "c.h5", "w") as f:  # compressed chunks: damage shows as a read error
        f.create_dataset("data", data=make_volume()[1], chunks=(4, 12, 12), compression="gzip")
        info = f["data"].id.get_chunk_info(3)
    raw = bytearray((tmp_path / "c.h5").read_bytes())
    raw[info.byte_offset : info.byte_offset + info.size] = b"\xa5" * info.size
    (tmp_path / "c.h5").write_bytes(bytes(raw))
    labels = {"format": "hdf5", "path": str(tmp_path / "c.h5"), "key": "data"}
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "c.h5", "'data'", "cannot read")


def test_a_damaged_zarr_source_chunk_names_the_store(tmp_path: Path) -> None:
    image, labels = source_pair(tmp_path, "zarr")
    corrupt_middle(Path(labels["path"]) / "c" / "1" / "1" / "0", 16)
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "labels.zarr", "cannot read")


def test_a_truncated_png_slice_names_the_slice(tmp_path: Path) -> None:
    image, labels = source_pair(tmp_path, "png")
    slice_file = sorted(Path(image["glob"]).parent.glob("*.png"))[5]
    slice_file.write_bytes(slice_file.read_bytes()[:-200])
    _assemble_fails(tmp_path, dataset_config(tmp_path, image, labels), "005.png")


def test_a_truncated_tile_names_the_tile(tmp_path: Path) -> None:
    image, labels, _ = _tiles(tmp_path)
    tile = tmp_path / "data" / "labels" / "4.npy"
    tile.write_bytes(tile.read_bytes()[:-500])
    config = dataset_config(tmp_path, image, labels)
    with pytest.raises(UserError) as info:  # the header check or the read names the tile
        plan = Plan.from_config(config, check_networks=False)
        assemble_dataset(plan.settings.datasets["real"], tmp_path / "out.zarr", (4, 12, 12))
    assert "4.npy" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out.zarr").exists()
