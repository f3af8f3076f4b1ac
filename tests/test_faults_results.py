"""The fault matrix (see ``tests/test_faults.py``) for results: damaged chunks of assembled
volumes, damaged checkpoints, and networks checked at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import zarr

from pipeline_lib.config import load_datasets
from pipeline_lib.data.assemble import assemble_dataset
from pipeline_lib.errors import DataError, UserError
from pipeline_lib.workflow import Plan
from tests.faults import (
    Config,
    corrupt_middle,
    dataset_config,
    expect_user_error,
    source_pair,
    tiny_model,
)

# --- damaged results: chunks of assembled volumes, checkpoints ------------------------------


def _assembled(tmp_path: Path) -> Path:
    image, labels = source_pair(tmp_path, "npy")
    plan = Plan.from_config(dataset_config(tmp_path, image, labels), check_networks=False)
    out = tmp_path / "vol.zarr"
    assemble_dataset(plan.settings.datasets["real"], out, (4, 12, 12))
    return out


@pytest.mark.parametrize("array", ["image", "labels"])
def test_a_damaged_chunk_of_an_assembled_volume_stops_its_reader(tmp_path: Path, array: str) -> None:
    from pipeline_lib.evaluation.run import evaluate_segmentation  # noqa: F401 (a reader of volumes)
    from pipeline_lib.io.volumes import open_array

    store = _assembled(tmp_path)
    corrupt_middle(store / array / "s0" / "c" / "1" / "0" / "1", 8)
    expect_user_error(lambda: open_array(store, array)[...], "vol.zarr", f"'{array}'", "c/1/0/1", "damaged")


def test_a_deleted_chunk_of_an_assembled_volume_stops_its_reader(tmp_path: Path) -> None:
    from pipeline_lib.io.volumes import open_array

    store = _assembled(tmp_path)
    (store / "image" / "s0" / "c" / "0" / "1" / "1").unlink()
    expect_user_error(lambda: open_array(store, "image")[...], "vol.zarr", "'image'", "c/0/1/1", "missing")


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
    message = expect_user_error(lambda: load_model(checkpoint), str(checkpoint), "unreadable checkpoint")
    assert f"rm -r {checkpoint.parent}" in message


def test_a_checkpoint_without_weights_is_unreadable(tmp_path: Path) -> None:
    import torch

    from pipeline_lib.inference.predictor import read_checkpoint

    torch.save({"epoch": 3}, tmp_path / "x.ckpt")
    expect_user_error(lambda: read_checkpoint(tmp_path / "x.ckpt"), "x.ckpt", "KeyError")


def test_data_errors_are_user_errors() -> None:
    assert issubclass(DataError, UserError)


def test_load_datasets_names_the_file_of_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("datasets:\n  a: {}\n  a: {}\n")
    expect_user_error(lambda: load_datasets(path), "d.yaml", "line 3", "'a'")


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
    tiny_model(config).update(architecture=architecture, architecture_params=params, patch_shape=patch)
    expect_user_error(lambda: Plan.from_config(config), *names)


def test_a_network_the_meta_device_cannot_run_is_left_to_training(tiny_run: tuple[Path, Config]) -> None:
    from pipeline_lib.startup import run_on_meta

    _, config = tiny_run
    tiny_model(config).update(architecture="swin_unetr", architecture_params={"feature_size": 12})
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
    tiny_model(config)["learning_rate"] = 0.5
    Plan.from_config(config, network_cache=cache)
    assert len(calls) == 1
