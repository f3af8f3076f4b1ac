"""Prediction on the model's device: encoding there, batch sizing, memory format, host copies.

The CPU runs the same device code path (``device="cpu"``); the tests marked ``needs_cuda``
cover what only CUDA has (pinned copies, the memory probe, bf16 with channels_last_3d).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline_lib.devices as devices
from pipeline_lib.inference.predict import AFFINITIES, make_predictor, predict_array, predict_volume
from pipeline_lib.inference.predictor import WindowPredictor, use_channels_last
from pipeline_lib.inference.storage import encode_tensors
from pipeline_lib.io.affinities import encode_affinities
from pipeline_lib.io.volumes import open_array
from tests.inference.conftest import DEVICE, needs_cuda, save_checkpoint, settings, write_volume

MODEL = {
    "architecture_params": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "offsets": [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
    "patch_shape": [8, 16, 16],
}
PREDICT = {"block_shape": [16, 32, 32], "chunk_shape": [8, 16, 16], "overlap": 0.5, "batch_size": 3}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("device")
    image = (np.random.default_rng(3).random((20, 40, 36)) * 255).astype(np.uint8)
    model, _ = settings(MODEL)
    return {
        "root": root,
        "volume": write_volume(root / "v.zarr", image),
        "ckpt": save_checkpoint(root / "m.ckpt", model),
    }


def test_encode_tensors_equals_the_numpy_encoding() -> None:
    """Clip, scale, round half to even: the device encoding is the host encoding bit for bit."""
    halves = (np.arange(256, dtype=np.float32) + 0.5) / 255  # exactly between two codes after scaling
    values = np.concatenate([halves, np.random.default_rng(0).random(1000, dtype=np.float32), [-0.2, 1.3, 0, 1]])
    affinities = values.astype(np.float32).reshape(1, 1, 1, -1)
    variance = np.random.default_rng(1).random(affinities.shape, dtype=np.float32)
    encoded, var16 = encode_tensors((torch.from_numpy(affinities.copy()), torch.from_numpy(variance)), "uint8")
    assert encoded.dtype == torch.uint8 and var16.dtype == torch.float16
    np.testing.assert_array_equal(encoded.numpy(), encode_affinities(affinities, "uint8"))
    np.testing.assert_array_equal(var16.numpy(), variance.astype(np.float16))
    (f16,) = encode_tensors((torch.from_numpy(affinities),), "float16")
    np.testing.assert_array_equal(f16.numpy(), encode_affinities(affinities, "float16"))


def test_uint8_blocks_equal_todays_host_encoding_of_the_float_prediction(case: dict[str, Path]) -> None:
    """Blockwise uint8 (encoded on the device) = host encoding of the whole-volume float prediction,
    except where float noise straddles a rounding boundary (then by one code)."""
    model, predict = settings(MODEL, {**PREDICT, "dtype": "uint8"})
    out = case["root"] / "u8.zarr"
    predict_volume(case["volume"], case["ckpt"], out, model, predict)
    stored = open_array(out, AFFINITIES)[...]
    image = open_array(case["volume"], "image")[...]
    expected = encode_affinities(
        predict_array(make_predictor(case["ckpt"], model, predict, DEVICE), image, model, predict), "uint8"
    )
    diff = np.abs(stored.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.999


def test_channels_last_3d_gives_the_same_prediction(case: dict[str, Path]) -> None:
    model, contiguous = settings(MODEL, {**PREDICT, "memory_format": "contiguous"})
    _, last = settings(MODEL, {**PREDICT, "memory_format": "channels_last_3d", "batch_size": 7})
    image = open_array(case["volume"], "image")[:12, :32, :32]
    predictor = make_predictor(case["ckpt"], model, last, DEVICE)
    assert predictor.channels_last
    a = predict_array(make_predictor(case["ckpt"], model, contiguous, DEVICE), image, model, contiguous)
    b = predict_array(predictor, image, model, last)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_memory_format_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("auto", torch.bfloat16, cuda) and use_channels_last("auto", torch.float16, cuda)
    assert not use_channels_last("auto", None, cuda) and not use_channels_last("auto", torch.bfloat16, cpu)
    assert use_channels_last("channels_last_3d", None, cpu) and not use_channels_last(
        "contiguous", torch.bfloat16, cuda
    )


def test_batch_sizes() -> None:
    predictor = WindowPredictor([torch.nn.Conv3d(1, 3, 1)], [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    cpu = torch.device("cpu")
    assert predictor.batch_size(5, (4, 8, 8), cpu) == 5
    assert predictor.batch_size("auto", (4, 8, 8), cpu) == devices.CPU_BATCH_SIZE
    assert devices.batch_for_memory(10_000, 100) == 50  # half of the free memory
    assert devices.batch_for_memory(10_000, 100, fraction=1.0, cap=64) == 64
    assert devices.batch_for_memory(50, 100) == 1 and devices.batch_for_memory(50, 0, cap=9) == 9


def test_auto_workers() -> None:
    assert devices.auto_workers(cuda=False, cpus=64) == 0  # the CPU trains: workers would compete
    assert devices.auto_workers(cuda=True, cpus=16) == devices.MAX_WORKERS
    assert devices.auto_workers(cuda=True, cpus=4) == 3
    assert devices.auto_workers(cuda=True, cpus=16, devices=4) == 3
    assert devices.auto_workers(cuda=True, cpus=1) == 0
    assert devices.available_cpus() >= 1


def test_host_device_copies_and_float32_math(monkeypatch: pytest.MonkeyPatch) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    tensor = devices.to_device(array, DEVICE)
    assert tensor.device.type == DEVICE.type and tensor.dtype == torch.uint8
    (back,) = devices.to_host((tensor * 2,))
    assert back.device.type == "cpu"
    np.testing.assert_array_equal(back.numpy(), array * 2)
    assert devices.to_host(()) == ()
    monkeypatch.setattr(devices, "FLOAT32_MATMUL_PRECISION", "medium")
    devices.configure_float32_math()
    assert torch.get_float32_matmul_precision() == "medium"


@needs_cuda
def test_cuda_auto_batch_size_probes_memory_and_keeps_the_random_state() -> None:
    cuda = torch.device("cuda")
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.Dropout(0.5), torch.nn.Conv3d(8, 3, 1))
    predictor = WindowPredictor([net.to(cuda).eval()], [[-1, 0, 0], [0, -1, 0], [0, 0, -1]], mc_samples=2)
    state = torch.cuda.get_rng_state(cuda)
    batch = predictor.batch_size("auto", (8, 32, 32), cuda)
    assert 1 <= batch <= 256 and predictor.batch_size("auto", (8, 32, 32), cuda) == batch
    assert torch.equal(torch.cuda.get_rng_state(cuda), state)


@needs_cuda
def test_cuda_copies_are_pinned() -> None:
    tensor = devices.to_device(np.ones((4, 4), np.uint8), torch.device("cuda"))
    (host,) = devices.to_host((tensor,))
    assert tensor.is_cuda and host.is_pinned() and int(host.sum()) == 16


@needs_cuda
def test_cuda_bf16_channels_last_is_close_to_fp32(case: dict[str, Path]) -> None:
    cuda = torch.device("cuda")
    model, fp32 = settings(MODEL, {**PREDICT, "precision": "32"})
    _, bf16 = settings(MODEL, {**PREDICT, "precision": "bf16-mixed", "batch_size": "auto"})
    image = open_array(case["volume"], "image")[...]
    low = make_predictor(case["ckpt"], model, bf16, cuda)
    assert low.channels_last and low.dtype is torch.bfloat16
    a = predict_array(make_predictor(case["ckpt"], model, fp32, cuda), image, model, fp32)
    b = predict_array(low, image, model, bf16)
    assert np.abs(a - b).max() < 0.05


def test_auto_batch_size_on_a_pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arithmetic and caching of ``batch_size: auto`` with CUDA's memory queries answered by hand."""
    import pipeline_lib.inference.predictor as predictor_module

    probes: list[str] = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (8 * 10**9, 16 * 10**9))
    monkeypatch.setattr(predictor_module, "probe_bytes_per_item", lambda run, device: probes.append("probe") or 1e8)
    predictor = WindowPredictor([torch.nn.Conv3d(1, 3, 1)], [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    cuda = torch.device("cuda")
    per_window = 1e8 + 8 * 32 * 32 * (16 * 3 + 12)  # the forward pass, then blending's indices and copies
    expected = int(0.5 * 8e9 / per_window)  # half of the free 8 GB
    assert expected == 39 and predictor.batch_size("auto", (8, 32, 32), cuda) == expected
    assert predictor.batch_size("auto", (8, 32, 32), cuda) == expected and probes == ["probe"]  # measured once
    predictor.batch_size("auto", (16, 32, 32), cuda)
    assert len(probes) == 2  # another window shape is measured again

    calls: list[int] = []
    peak = {"now": 1000}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: peak.update(now=1000))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: peak["now"])

    def run(n: int) -> None:
        calls.append(n)
        peak["now"] = 1000 + n * 250

    assert devices.probe_bytes_per_item(run, cuda) == 250 and calls == [4]


def test_contexts_are_read_ahead_in_order() -> None:
    """The block loop gets each block's context, in order, while the next one is read in the background."""
    from pipeline_lib.geometry import Box
    from pipeline_lib.inference.predict import _read_ahead

    image = np.arange(4 * 6 * 6).reshape(4, 6, 6)
    boxes = [Box((0, 0, 0), (2, 3, 6)), Box((1, 2, 0), (4, 6, 6)), Box((0, 0, 3), (4, 6, 6))]
    reads: list[int] = []

    def pending():
        for i, box in enumerate(boxes):
            reads.append(i)
            yield i, box, box

    got = []
    for i, _, box, context in _read_ahead(pending(), image):
        got.append(i)
        assert reads == list(range(min(i + 2, len(boxes))))  # the next block is already on its way
        np.testing.assert_array_equal(context, image[box.slices])
    assert got == [0, 1, 2]
    assert list(_read_ahead(iter([]), image)) == []
