"""Blockwise zarr-to-zarr prediction: exactness, resume, grid alignment, provenance, extras."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from pipeline_lib.errors import ConfigError
from pipeline_lib.inference.predict import (
    AFFINITIES,
    UNCERTAINTY,
    finish_prediction,
    make_predictor,
    predict_array,
    predict_blocks,
    predict_volume,
    prediction_grid,
    prepare_prediction,
)
from pipeline_lib.inference.predictor import autocast_dtype, load_model
from pipeline_lib.io.affinities import as_float
from pipeline_lib.io.volumes import normalize_image, open_array, partial_path, store_attrs
from tests.inference.conftest import DEVICE, save_checkpoint, settings, write_volume

SHAPE = (28, 50, 60)  # not a multiple of the block shape along any axis
MODEL = {
    "architecture_params": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "offsets": [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -3, 0], [0, 0, -3]],
    "patch_shape": [8, 16, 16],
}
PREDICT = {
    "block_shape": [16, 32, 32],
    "chunk_shape": [8, 16, 16],
    "overlap": 0.5,
    "batch_size": 4,
    "dtype": "float16",
}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    image = (rng.random(SHAPE) * 255).astype(np.uint8)
    model, _ = settings(MODEL)
    return {
        "root": root,
        "volume": write_volume(root / "volume.zarr", image),
        "ckpt": save_checkpoint(root / "a.ckpt", model, seed=0),
        "ckpt2": save_checkpoint(root / "b.ckpt", model, seed=1),
    }


def whole_volume_reference(case: dict[str, Path], window: tuple[int, ...], overlap: float) -> np.ndarray:
    """MONAI's sliding window over the whole volume in memory (sigmoid of the logits, blended),
    on the device ``predict_volume`` uses by default (a CUDA and a CPU run of one net differ
    by more than float noise, so references are computed on the device under test)."""
    module = load_model(case["ckpt"], DEVICE)
    image = torch.from_numpy(normalize_image(open_array(case["volume"], "image")[...])).to(DEVICE)
    with torch.inference_mode():
        out = sliding_window_inference(
            image[None, None], window, 4, lambda x: torch.sigmoid(module(x)), overlap, mode="gaussian"
        )
    assert isinstance(out, torch.Tensor)
    return out[0].cpu().numpy()


def test_blockwise_equals_whole_volume(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, PREDICT)
    out = case["root"] / "blockwise.zarr"
    predict_volume(case["volume"], case["ckpt"], out, model, predict)
    stored = open_array(out, AFFINITIES)
    assert stored.shape == (5, *SHAPE) and stored.dtype == np.float16
    reference = whole_volume_reference(case, model.patch_shape, predict.overlap)
    # float16 storage: half an ulp at 1.0 is 2**-12; the prediction itself agrees to ~1e-6
    np.testing.assert_allclose(as_float(stored[...]), reference, atol=2.5e-4, rtol=0)
    assert store_attrs(out)["complete"] is True


def test_blockwise_in_memory_blocks_match_to_float_noise(case: dict[str, Path]) -> None:
    from pipeline_lib.inference.predict import _predict_image
    from pipeline_lib.inference.sliding import window_context

    model, predict = settings(MODEL, PREDICT)
    reference = whole_volume_reference(case, model.patch_shape, predict.overlap)
    image = open_array(case["volume"], "image")
    grid = prediction_grid(SHAPE, predict)
    predictor = make_predictor(case["ckpt"], model, predict, DEVICE)
    for block_id in [0, len(grid) // 2, len(grid) - 1]:
        block = grid.block(block_id)
        ctx = window_context(block, SHAPE, model.patch_shape, predict.overlap)
        context_image = np.asarray(image[ctx.slices])
        aff, _ = _predict_image(predictor, context_image, model.patch_shape, predict, DEVICE)
        got = aff[(slice(None), *block.relative_to(ctx))]
        np.testing.assert_allclose(got, reference[(slice(None), *block.slices)], atol=1e-5, rtol=0)


def test_resume_runs_only_missing_blocks(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, {**PREDICT, "dtype": "uint8"})
    out = case["root"] / "resume.zarr"
    partial = prepare_prediction(case["volume"], case["ckpt"], partial_path(out), model, predict)
    n = len(prediction_grid(SHAPE, predict))
    assert predict_blocks(case["volume"], case["ckpt"], partial, range(n), model, predict) == list(range(n))
    uninterrupted = open_array(partial, AFFINITIES)[...]

    grid = prediction_grid(SHAPE, predict)
    target = open_array(partial, AFFINITIES, mode="r+")
    for block_id in (2, 5):
        (partial / "blocks" / f"{block_id}.done").unlink()
        target[(slice(None), *grid.block(block_id).slices)] = 0  # as if the job died mid-write
    with pytest.raises(RuntimeError, match=r"blocks \[2, 5\]"):
        finish_prediction(partial)
    assert predict_blocks(case["volume"], case["ckpt"], partial, range(n), model, predict) == [2, 5]
    finish_prediction(partial)
    np.testing.assert_array_equal(open_array(out, AFFINITIES)[...], uninterrupted)
    assert not partial_path(out).exists()


def test_preparing_again_resumes_the_same_run_and_replaces_another(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, {**PREDICT, "dtype": "uint8"})
    out = case["root"] / "reprepare.zarr"
    partial = prepare_prediction(case["volume"], case["ckpt"], partial_path(out), model, predict)
    assert predict_blocks(case["volume"], case["ckpt"], partial, [0, 1], model, predict) == [0, 1]
    done = open_array(partial, AFFINITIES)[...]

    prepare_prediction(case["volume"], case["ckpt"], partial, model, predict)  # same run: kept
    assert (partial / "blocks" / "0.done").exists()
    np.testing.assert_array_equal(open_array(partial, AFFINITIES)[...], done)
    assert predict_blocks(case["volume"], case["ckpt"], partial, [0, 1, 2], model, predict) == [2]

    _, other = settings(MODEL, {**PREDICT, "dtype": "uint8", "overlap": 0.25})
    prepare_prediction(case["volume"], case["ckpt"], partial, model, other)  # other settings: afresh
    assert not list((partial / "blocks").iterdir())
    assert not open_array(partial, AFFINITIES)[...].any()


def test_misaligned_grid_is_rejected(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, {**PREDICT, "block_shape": [16, 32, 40]})
    with pytest.raises(ValueError, match="not a multiple of chunk shape"):
        prediction_grid(SHAPE, predict)
    with pytest.raises(ValueError, match="concurrent block writers"):
        prepare_prediction(case["volume"], case["ckpt"], partial_path(case["root"] / "bad.zarr"), model, predict)


def test_provenance_records_checkpoint_config_and_tta(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, {**PREDICT, "tta": {"flip": ["x"], "transpose": True, "combine": "max"}})
    partial = prepare_prediction(
        case["volume"], case["ckpt"], partial_path(case["root"] / "attrs.zarr"), model, predict
    )
    attrs = store_attrs(partial)
    assert attrs["checkpoints"][0]["sha256"] == hashlib.sha256(case["ckpt"].read_bytes()).hexdigest()
    assert len(attrs["config_hash"]) == 64
    assert attrs["tta"]["variants"] == ["identity", "flip_x", "transpose", "flip_x+transpose"]
    assert attrs["tta"]["combine"] == "max"
    assert attrs["provenance"]["settings"]["predict"]["tta"]["transpose"] is True
    shutil.rmtree(partial)


def test_transpose_without_partner_is_rejected_before_any_block(case: dict[str, Path]) -> None:
    model, predict = settings({**MODEL, "offsets": MODEL["offsets"][:4]}, {**PREDICT, "tta": {"transpose": True}})
    with pytest.raises(ConfigError, match="partner"):
        prepare_prediction(case["volume"], case["ckpt"], partial_path(case["root"] / "t.zarr"), model, predict)


def test_blockwise_tta_equals_whole_volume_tta(case: dict[str, Path]) -> None:
    """TTA runs per window, so the global lattice keeps blockwise == whole-volume with TTA too."""
    model, predict = settings(MODEL, {**PREDICT, "tta": {"flip": ["x"], "transpose": True}})
    out = case["root"] / "tta.zarr"
    predict_volume(case["volume"], case["ckpt"], out, model, predict)
    image = open_array(case["volume"], "image")[...]
    whole = predict_array(make_predictor(case["ckpt"], model, predict, DEVICE), image, model, predict)
    np.testing.assert_allclose(as_float(open_array(out, AFFINITIES)[...]), whole, atol=2.5e-4, rtol=0)
    plain = whole_volume_reference(case, model.patch_shape, predict.overlap)
    assert np.abs(whole - plain).max() > 1e-3  # TTA did change a (non-equivariant) model's output


def test_ensemble_averages_checkpoints(case: dict[str, Path]) -> None:
    model, predict = settings(MODEL, PREDICT)
    image = open_array(case["volume"], "image")[:8, :32, :32]
    cpu = torch.device("cpu")
    a = predict_array(make_predictor(case["ckpt"], model, predict, cpu), image, model, predict)
    b = predict_array(make_predictor(case["ckpt2"], model, predict, cpu), image, model, predict)
    both = predict_array(make_predictor([case["ckpt"], case["ckpt2"]], model, predict, cpu), image, model, predict)
    np.testing.assert_allclose(both, (a + b) / 2, atol=1e-6)
    ensemble = [case["ckpt"], case["ckpt2"]]
    partial = prepare_prediction(case["volume"], ensemble, partial_path(case["root"] / "ens.zarr"), model, predict)
    assert [Path(c["path"]).name for c in store_attrs(partial)["checkpoints"]] == ["a.ckpt", "b.ckpt"]
    shutil.rmtree(partial)


def test_mc_dropout_writes_uncertainty(case: dict[str, Path]) -> None:
    params = {**MODEL["architecture_params"], "dropout": 0.3}
    model, predict = settings({**MODEL, "architecture_params": params}, {**PREDICT, "mc_dropout_samples": 3})
    ckpt = save_checkpoint(case["root"] / "dropout.ckpt", model)
    small = (np.random.default_rng(1).random((16, 32, 48)) * 255).astype(np.uint8)
    volume = write_volume(case["root"] / "small.zarr", small)
    out = case["root"] / "mc.zarr"
    predict_volume(volume, ckpt, out, model, predict)
    variance = open_array(out, UNCERTAINTY)[...].astype(np.float32)
    assert variance.shape == (5, 16, 32, 48) and variance.min() >= 0 and variance.mean() > 0

    no_dropout, _ = settings(MODEL)
    with pytest.raises(ConfigError, match="the model has no dropout"):
        make_predictor(case["ckpt"], no_dropout, predict, torch.device("cpu"))
    with pytest.raises(ConfigError, match="ensemble member 2 of 2 has no dropout"):
        make_predictor([ckpt, case["ckpt"]], no_dropout, predict, torch.device("cpu"))


def test_precision(case: dict[str, Path]) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", "bf16-mixed", cpu) is None
    assert autocast_dtype("auto", "bf16-mixed", cuda) is torch.bfloat16
    assert autocast_dtype("16-mixed", "32", cpu) is None
    assert autocast_dtype("16-mixed", "32", cuda) is torch.float16
    assert autocast_dtype("bf16-mixed", "32", cpu) is torch.bfloat16
    model, predict = settings(MODEL, PREDICT)
    _, bf16 = settings(MODEL, {**PREDICT, "precision": "bf16-mixed"})
    image = open_array(case["volume"], "image")[:8, :32, :32]
    fp32 = predict_array(make_predictor(case["ckpt"], model, predict, cpu), image, model, predict)
    low = predict_array(make_predictor(case["ckpt"], model, bf16, cpu), image, model, bf16)
    assert 0 < np.abs(fp32 - low).max() < 0.05


def test_load_model_matches_lightning_loading(tmp_path: Path) -> None:
    """Deep supervision and extra targets: same eval logits as ``AffinityModule.load_from_checkpoint``."""
    from pipeline_lib.training.module import AffinityModule

    model, _ = settings(
        {
            "architecture": "rsunet",
            "architecture_params": {"widths": [4, 8], "downsample": [[1, 2, 2]]},
            "targets": [{"type": "affinity"}, {"type": "boundary"}],
            "deep_supervision": {"enabled": True},
        }
    )
    ckpt = save_checkpoint(tmp_path / "ds.ckpt", model)
    ours = load_model(ckpt)
    lightning_module = AffinityModule.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
    x = torch.rand(2, 1, 8, 16, 16)
    with torch.inference_mode():
        expected = lightning_module(x)
        assert expected.shape == (2, 3 + 1, 8, 16, 16)
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
    assert not ours.training and ours.offsets == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


def test_a_checkpoint_of_an_earlier_version_loads_with_the_new_keys_defaulted(tmp_path: Path) -> None:
    """Checkpoints written before ``lsd_sigma`` / ``lsd_downsample`` existed lack them in their
    targets: they load, with the schema's defaults (5.0, 2), and predict as before."""
    model, _ = settings({"targets": [{"type": "affinity"}, {"type": "boundary"}]})
    ckpt = save_checkpoint(tmp_path / "new.ckpt", model)
    saved = torch.load(ckpt, weights_only=True)
    old = {**saved, "hyper_parameters": dict(saved["hyper_parameters"])}
    old["hyper_parameters"]["targets"] = [
        {k: v for k, v in t.items() if k not in ("lsd_sigma", "lsd_downsample")}
        for t in saved["hyper_parameters"]["targets"]
    ]
    assert all("lsd_sigma" not in t for t in old["hyper_parameters"]["targets"])
    torch.save(old, tmp_path / "old.ckpt")
    earlier, current = load_model(tmp_path / "old.ckpt"), load_model(ckpt)
    assert [(t.lsd_sigma, t.lsd_downsample) for t in earlier.network.targets] == [(5.0, 2), (5.0, 2)]
    assert earlier.network == current.network
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(earlier(x), current(x), rtol=0, atol=0)


def test_prediction_path_does_not_import_lightning() -> None:
    """Checkpoints load without Lightning, which keeps its ~80 MB of imports out of block jobs."""
    code = "import sys, pipeline_lib.inference.predict; print('lightning' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
