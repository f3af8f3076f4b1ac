"""The fault matrix: bad configs, bad or damaged files, and what the user sees for each.

Every case asserts a :class:`~pipeline_lib.errors.UserError` (the workflow prints it as one
line, without traceback: ``tests/test_job_logging.py``, ``tests/workflow/test_faults_e2e.py``)
whose message is one line naming the key or file, and that nothing was published. Most cases
run the start-up validation (:meth:`Plan.from_config`) or the library function a job calls.
"""

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

from pipeline_lib.config import load_datasets
from pipeline_lib.data.assemble import assemble_dataset
from pipeline_lib.errors import DataError, UserError
from pipeline_lib.workflow import Plan
from tests.conftest import TINY_DATASETS, tiny_config, write_yaml

SHAPE = (8, 24, 24)
Config = dict[str, Any]


def _expect(call: Callable[[], object], *names: str) -> str:
    """``call`` raises a UserError whose one-line message contains every one of ``names``."""
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert "Traceback" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


# --- configuration: keys, types, ranges, references ---------------------------------------


def _model(c: Config) -> Config:
    return c["models"]["tiny"]


CONFIG_FAULTS: dict[str, tuple[Callable[[Config], None], tuple[str, ...]]] = {
    "unknown top-level key": (lambda c: c.update(predcit={}), ("predcit",)),
    "misspelled model key": (lambda c: _model(c).update(learning_rat=0.1), ("learning_rat",)),
    "wrong type": (lambda c: _model(c).update(max_steps="ten"), ("models.tiny.max_steps",)),
    "out of range": (lambda c: _model(c).update(learning_rate=-1.0), ("models.tiny.learning_rate",)),
    "patch of 2 axes": (lambda c: _model(c).update(patch_shape=[16, 32]), ("models.tiny.patch_shape",)),
    "unknown dataset": (lambda c: c["datasets"].append("nope"), ("'datasets'", "nope")),
    "no test dataset": (lambda c: c.update(datasets=["tiny_train", "tiny_val"]), ("'datasets'", "test")),
    "block not a multiple of chunk": (
        lambda c: c["predict"].update(block_shape=[20, 32, 32]),
        ("predict.block_shape",),
    ),
    "missing nearest-neighbour offset": (
        lambda c: _model(c).update(offsets=[[-1, 0, 0], [0, -1, 0]]),
        ("models.tiny.offsets",),
    ),
    "unknown decoder method": (lambda c: c["decoders"]["cc"].update(method="magic"), ("decoders.cc",)),
    "tune_threshold without val": (
        lambda c: c.update(datasets=["tiny_train", "tiny_test"]),
        ("decoders.cc.tune_threshold",),
    ),
    "ensemble of unknown model": (
        lambda c: c.update(ensembles={"both": {"models": ["tiny", "other"]}}),
        ("ensembles.both", "other"),
    ),
    "unknown architecture": (lambda c: _model(c).update(architecture="unett"), ("models.tiny", "unett", "unet")),
    "misspelled architecture param": (
        lambda c: _model(c)["architecture_params"].update(chanels=[8]),
        ("models.tiny", "chanels"),
    ),
    "patch larger than a train volume": (
        lambda c: _model(c).update(patch_shape=[32, 32, 32]),
        ("models.tiny.patch_shape", "tiny_train", "[24, 64, 64]"),
    ),
    "window too large to reflect-pad": (
        lambda c: c["predict"].update(window_shape=[56, 32, 32]),
        ("predict.padding_mode", "tiny_val"),
    ),
    "missing datasets file": (lambda c: c.update(datasets_file="/nonexistent/datasets.yaml"), ("/nonexistent",)),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FAULTS))
def test_config_faults_are_caught_at_start(tiny_run: tuple[Path, Config], case: str) -> None:
    _, config = tiny_run
    mutate, names = CONFIG_FAULTS[case]
    mutate(config)
    _expect(lambda: Plan.from_config(config), *names)


def _datasets_file(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return tiny_config(path)


def test_a_dataset_declared_twice_names_the_line(tmp_path: Path) -> None:
    text = json.dumps(TINY_DATASETS, indent=2)  # JSON is YAML; declare tiny_val twice
    entry = json.dumps(TINY_DATASETS["datasets"]["tiny_val"])  # type: ignore[index]
    text = text.replace('"tiny_test":', f'"tiny_val": {entry},\n    "tiny_test":', 1)
    config = _datasets_file(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith('"tiny_val": {"synthetic"'))
    _expect(lambda: Plan.from_config(config), "datasets.yaml", f"line {line}", "'tiny_val' is written twice")


def test_a_config_key_written_twice_names_the_file_and_line(tiny_run: tuple[Path, Config]) -> None:
    tmp, config = tiny_run
    config_file = tmp / "config.yaml"
    config_file.write_text("datasets: [a]\nmodels:\n  m: {}\ndatasets: [b]\n")
    _expect(lambda: Plan.from_config(config, [config_file]), "config.yaml", "line 4", "'datasets'")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("datasets: [unclosed\n", ("datasets.yaml", "not valid YAML")),
        ("- a list\n", ("datasets.yaml", "expected a mapping")),
        ("datasets:\n  x: {voxel_size: [1, 1, 1], roles: [test]}\n", ("datasets.yaml", "datasets.x")),
    ],
    ids=["unclosed", "a list", "no source"],
)
def test_a_malformed_datasets_file_is_caught_at_start(tmp_path: Path, text: str, names: tuple[str, ...]) -> None:
    config = _datasets_file(tmp_path, text)
    _expect(lambda: Plan.from_config(config), *names)


# --- sources: every format's missing, wrong and corrupt files -----------------------------


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


def _dataset_config(tmp_path: Path, image: dict[str, Any], labels: dict[str, Any], **extra: Any) -> Config:
    datasets = copy.deepcopy(TINY_DATASETS)
    datasets["datasets"]["real"] = {"image": image, "labels": labels, "voxel_size": [1, 1, 1], "roles": ["test"]}
    datasets["datasets"]["real"].update(extra)
    path = write_yaml(tmp_path / "datasets.yaml", datasets)
    config = tiny_config(path)
    config["datasets"] = ["tiny_train", "tiny_val", "real"]  # type: ignore[index]
    return config


def _sources(tmp_path: Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    image, labels = _volume()
    return write_source(tmp_path / "data", fmt, image, "image"), write_source(tmp_path / "data", fmt, labels, "labels")


def _main_file(spec: dict[str, Any]) -> Path:
    if "glob" in spec:
        return sorted(Path(spec["glob"]).parent.glob("*.png"))[0]
    return Path(spec["path"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_and_assembles(tmp_path: Path, fmt: str) -> None:
    image, labels = _sources(tmp_path, fmt)
    plan = Plan.from_config(_dataset_config(tmp_path, image, labels), check_networks=False)
    assert plan.shapes["real"] == SHAPE
    out = tmp_path / "real.zarr"
    assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12))
    provenance = zarr.open_group(str(out), mode="r").attrs["provenance"]
    assert str(_main_file(image).resolve()) in provenance["inputs"]  # type: ignore[index,operator]
    if fmt == "tiles":  # every tile is an input too
        assert str((tmp_path / "data" / "labels" / "4.npy").resolve()) in provenance["inputs"]  # type: ignore[index,operator]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_source_file_is_caught_at_start(tmp_path: Path, fmt: str) -> None:
    image, labels = _sources(tmp_path, fmt)
    gone = _main_file(labels)
    if gone.is_dir():
        import shutil

        shutil.rmtree(gone)
    elif fmt == "png":
        for f in gone.parent.glob("*.png"):
            f.unlink()
    else:
        gone.unlink()
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), "'real'", "labels")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_garbled_source_header_names_the_file(tmp_path: Path, fmt: str) -> None:
    image, labels = _sources(tmp_path, fmt)
    bad = _main_file(image)
    named = bad.name
    if bad.is_dir():  # zarr: its metadata
        bad = bad / "zarr.json"
    bad.write_bytes(b"\x00garbage\xff" * 8)
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), named, "'real' image")


@pytest.mark.parametrize(("fmt", "key"), [("hdf5", "key"), ("zarr", "array")])
def test_a_wrong_key_names_the_file_and_the_key(tmp_path: Path, fmt: str, key: str) -> None:
    image, labels = _sources(tmp_path, fmt)
    labels[key] = "nope"
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), Path(labels["path"]).name, "nope")


@pytest.mark.parametrize("fmt", ["hdf5", "npy", "tiff"])
def test_a_2d_file_where_a_volume_is_expected(tmp_path: Path, fmt: str) -> None:
    image, _ = _sources(tmp_path, fmt)
    flat = write_source(tmp_path / "flat", fmt, np.zeros((4, 24, 24), np.uint32)[0][None][0], "labels")
    config = _dataset_config(tmp_path, image, flat)
    _expect(lambda: Plan.from_config(config, check_networks=False), "labels")


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "npy"])
def test_image_and_labels_of_different_shapes(tmp_path: Path, fmt: str) -> None:
    image, _ = _sources(tmp_path, fmt)
    labels = write_source(tmp_path / "other", fmt, np.ones((8, 24, 20), np.uint32), "labels")
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), "'real'", "shapes differ", "[8, 24, 20]")


def test_float_labels_are_caught_at_start_naming_the_file(tmp_path: Path) -> None:
    image, _ = _sources(tmp_path, "hdf5")
    labels = write_source(tmp_path / "float", "hdf5", np.ones(SHAPE, np.float32), "labels")
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), "'real' labels", "labels.h5", "float32")


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
    image, labels = _sources(tmp_path, "npy")
    config = _dataset_config(tmp_path, image, labels, roi=roi)
    _expect(lambda: Plan.from_config(config, check_networks=False), *names)


def test_a_synthetic_roi_outside_is_caught_at_start(tiny_run: tuple[Path, Config]) -> None:
    tmp, config = tiny_run
    datasets = copy.deepcopy(TINY_DATASETS)
    datasets["datasets"]["tiny_test"]["roi"] = {"begin": [20, 0, 0], "shape": [10, 64, 64]}
    config["datasets_file"] = str(write_yaml(tmp / "datasets.yaml", datasets))
    _expect(lambda: Plan.from_config(config, check_networks=False), "'tiny_test'", "outside")


# --- tile JSON faults ---------------------------------------------------------------------


def _tiles(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    image, labels = _sources(tmp_path, "tiles")
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
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), "labels")


def test_a_tile_json_that_is_not_json(tmp_path: Path) -> None:
    image, labels, path = _tiles(tmp_path)
    path.write_text("{ not json")
    config = _dataset_config(tmp_path, image, labels)
    _expect(lambda: Plan.from_config(config, check_networks=False), "labels.json")


# --- faults only the voxels show: caught by the assemble job, nothing published ------------


def _assemble_fails(tmp_path: Path, config: Config, *names: str) -> None:
    plan = Plan.from_config(config, check_networks=False)
    out = tmp_path / "results" / "real.zarr"
    _expect(lambda: assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12)), "'real'", *names)
    assert not out.exists() and not out.with_name("real.zarr.partial").exists()


@pytest.mark.parametrize("fmt", ["hdf5", "npy", "zarr"])
def test_all_zero_labels_are_refused_by_assembly(tmp_path: Path, fmt: str) -> None:
    image, _ = _sources(tmp_path, fmt)
    labels = write_source(tmp_path / "zero", fmt, np.zeros(SHAPE, np.uint32), "labels")
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "labels", "all 0")


def test_negative_labels_are_refused_naming_the_file(tmp_path: Path) -> None:
    image, _ = _sources(tmp_path, "npy")
    labels = write_source(tmp_path / "neg", "npy", np.full(SHAPE, -3, np.int32), "labels")
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "labels.npy", "negative")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_image_values_are_refused_naming_the_file(tmp_path: Path, bad: float) -> None:
    _, labels = _sources(tmp_path, "hdf5")
    values = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    values[5, 20, 3] = bad
    image = write_source(tmp_path / "nan", "hdf5", values, "image")
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "image.h5", "non-finite")


def _corrupt_middle(path: Path, length: int = 64) -> None:
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2
    raw[start : start + length] = bytes(b ^ 0x5A for b in raw[start : start + length])
    path.write_bytes(bytes(raw))


def test_a_damaged_hdf5_chunk_names_the_file_and_key(tmp_path: Path) -> None:
    image, _ = _sources(tmp_path, "hdf5")
    with h5py.File(tmp_path / "c.h5", "w") as f:  # compressed chunks: damage shows as a read error
        f.create_dataset("data", data=_volume()[1], chunks=(4, 12, 12), compression="gzip")
        info = f["data"].id.get_chunk_info(3)
    raw = bytearray((tmp_path / "c.h5").read_bytes())
    raw[info.byte_offset : info.byte_offset + info.size] = b"\xa5" * info.size
    (tmp_path / "c.h5").write_bytes(bytes(raw))
    labels = {"format": "hdf5", "path": str(tmp_path / "c.h5"), "key": "data"}
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "c.h5", "'data'", "cannot read")


def test_a_damaged_zarr_source_chunk_names_the_store(tmp_path: Path) -> None:
    image, labels = _sources(tmp_path, "zarr")
    _corrupt_middle(Path(labels["path"]) / "c" / "1" / "1" / "0", 16)
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "labels.zarr", "cannot read")


def test_a_truncated_png_slice_names_the_slice(tmp_path: Path) -> None:
    image, labels = _sources(tmp_path, "png")
    slice_file = sorted(Path(image["glob"]).parent.glob("*.png"))[5]
    slice_file.write_bytes(slice_file.read_bytes()[:-200])
    _assemble_fails(tmp_path, _dataset_config(tmp_path, image, labels), "005.png")


def test_a_truncated_tile_names_the_tile(tmp_path: Path) -> None:
    image, labels, _ = _tiles(tmp_path)
    tile = tmp_path / "data" / "labels" / "4.npy"
    tile.write_bytes(tile.read_bytes()[:-500])
    config = _dataset_config(tmp_path, image, labels)
    with pytest.raises(UserError) as info:  # the header check or the read names the tile
        plan = Plan.from_config(config, check_networks=False)
        assemble_dataset(plan.settings.datasets["real"], tmp_path / "out.zarr", (4, 12, 12))
    assert "4.npy" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out.zarr").exists()


# --- damaged results: chunks of assembled volumes, checkpoints ------------------------------


def _assembled(tmp_path: Path) -> Path:
    image, labels = _sources(tmp_path, "npy")
    plan = Plan.from_config(_dataset_config(tmp_path, image, labels), check_networks=False)
    out = tmp_path / "vol.zarr"
    assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12))
    return out


@pytest.mark.parametrize("array", ["image", "labels"])
def test_a_damaged_chunk_of_an_assembled_volume_stops_its_reader(tmp_path: Path, array: str) -> None:
    from pipeline_lib.evaluation.run import evaluate_segmentation  # noqa: F401 (a reader of volumes)
    from pipeline_lib.io.volumes import open_array

    store = _assembled(tmp_path)
    _corrupt_middle(store / array / "s0" / "c" / "1" / "0" / "1", 8)
    _expect(lambda: open_array(store, array)[...], "vol.zarr", f"'{array}'", "c/1/0/1", "damaged")


def test_a_deleted_chunk_of_an_assembled_volume_stops_its_reader(tmp_path: Path) -> None:
    from pipeline_lib.io.volumes import open_array

    store = _assembled(tmp_path)
    (store / "image" / "s0" / "c" / "0" / "1" / "1").unlink()
    _expect(lambda: open_array(store, "image")[...], "vol.zarr", "'image'", "c/0/1/1", "missing")


def test_labels_groups_carry_ngff_image_label_metadata(tmp_path: Path) -> None:
    store = _assembled(tmp_path)
    ome = zarr.open_group(str(store / "labels"), mode="r").attrs["ome"]
    assert ome["image-label"] == {"version": "0.5", "source": {"image": "../image"}}  # type: ignore[index,call-overload]
    assert "image-label" not in zarr.open_group(str(store / "image"), mode="r").attrs["ome"]  # type: ignore[operator]


@pytest.mark.parametrize("keep", [0, 100, 2000])
def test_a_truncated_checkpoint_names_the_file_and_the_retraining_command(tmp_path: Path, keep: int) -> None:
    from pipeline_lib.inference.predictor import load_model

    checkpoint = tmp_path / "results" / "models" / "m" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    import torch

    torch.save({"hyper_parameters": {}, "state_dict": {"w": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:keep])
    message = _expect(lambda: load_model(checkpoint), str(checkpoint), "unreadable checkpoint")
    assert f"rm -r {checkpoint.parent}" in message


def test_a_checkpoint_without_weights_is_unreadable(tmp_path: Path) -> None:
    import torch

    from pipeline_lib.inference.predictor import read_checkpoint

    torch.save({"epoch": 3}, tmp_path / "x.ckpt")
    _expect(lambda: read_checkpoint(tmp_path / "x.ckpt"), "x.ckpt", "KeyError")


def test_data_errors_are_user_errors() -> None:
    assert issubclass(DataError, UserError)


def test_load_datasets_names_the_file_of_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("datasets:\n  a: {}\n  a: {}\n")
    _expect(lambda: load_datasets(path), "d.yaml", "line 3", "'a'")


@pytest.mark.parametrize(
    ("architecture", "params", "patch", "names"),
    [
        ("rsunet", {}, [15, 31, 31], ("models.tiny", "patch_shape [15, 31, 31] does not fit", "divisible")),
        ("segresnet", {}, [16, 30, 30], ("models.tiny", "patch_shape [16, 30, 30] does not fit")),
    ],
)
def test_a_patch_the_network_cannot_take_is_caught_at_start(
    tiny_run: tuple[Path, Config], architecture: str, params: dict[str, Any], patch: list[int], names: tuple[str, ...]
) -> None:
    _, config = tiny_run
    _model(config).update(architecture=architecture, architecture_params=params, patch_shape=patch)
    _expect(lambda: Plan.from_config(config), *names)


def test_a_network_the_meta_device_cannot_run_is_left_to_training(tiny_run: tuple[Path, Config]) -> None:
    from pipeline_lib.startup import run_on_meta

    _, config = tiny_run
    _model(config).update(architecture="swin_unetr", architecture_params={"feature_size": 12})
    plan = Plan.from_config(config, check_networks=False)
    run_on_meta(plan.settings.models["tiny"])  # data-dependent code (Tensor.item) on meta: no verdict, no error


def test_passed_network_checks_are_remembered(
    tiny_run: tuple[Path, Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline_lib.startup as startup

    _, config = tiny_run
    cache = tmp_path / "checked.json"
    Plan.from_config(config, network_cache=cache)
    assert len(json.loads(cache.read_text())) == 1
    calls: list[object] = []
    monkeypatch.setattr(startup, "run_on_meta", calls.append)
    Plan.from_config(config, network_cache=cache)
    assert calls == []  # the same entry: not built again
    _model(config)["learning_rate"] = 0.5
    Plan.from_config(config, network_cache=cache)
    assert len(calls) == 1
