"""Shared helpers of the inference tests: settings from the schema, volumes, models, an oracle."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import torch
from torch import nn

from pipeline_lib.config import ModelSettings, PredictSettings, build
from pipeline_lib.config.schema import validate_with_defaults
from pipeline_lib.io.volumes import create_array


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny test windows run ~8× faster on one thread on this shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where predict_blocks runs by default
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Full float32 on CUDA (no TF32 in convolutions or matrix products), so that two runs on the
    same card that differ only in batch composition agree to float noise (TF32 alone moves
    outputs by ~1e-3, more than the float16 storage tolerance of the equality tests)."""
    import pipeline_lib.devices

    monkeypatch.setattr(pipeline_lib.devices, "FLOAT32_MATMUL_PRECISION", "highest")
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.allow_tf32 = before[1]


SHORT = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LONG = SHORT + [[-3, 0, 0], [0, -3, 0], [0, 0, -3], [0, -9, 0], [0, 0, -9]]


def settings(
    model: dict[str, Any] | None = None, predict: dict[str, Any] | None = None
) -> tuple[ModelSettings, PredictSettings]:
    """Model and predict settings from the schema defaults plus ``model``/``predict`` overrides."""
    config = {
        "datasets": ["x"],
        "models": {"m": {"architecture": "unet", **(model or {})}},
        "decoders": {"d": {"method": "connected_components"}},
        "predict": predict or {},
    }
    data = validate_with_defaults(config, "config", "test")
    return build(ModelSettings, data["models"]["m"]), build(PredictSettings, data["predict"])


def random_labels(shape: Sequence[int], cell: int = 6, seed: int = 0) -> np.ndarray:
    """Blocky random labels (0 included) of ``shape``; neighbours differ often, long edges too."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 7, size=[-(-s // cell) + 1 for s in shape])
    shift = rng.integers(0, cell, size=3)
    labels = coarse.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)
    return labels[tuple(slice(int(o), int(o) + s) for o, s in zip(shift, shape, strict=True))].astype(np.int64)


class Oracle(nn.Module):
    """A "model" whose logits are ±1000 at the true affinities of its input, read as labels.

    Edges whose partner lies outside the input are 0 (undefined), as in ``targets.affinities``.
    """

    def __init__(self, offsets: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.offsets = [tuple(o) for o in offsets]
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        labels = image[:, 0]
        out = torch.zeros((labels.shape[0], len(self.offsets), *labels.shape[1:]), dtype=torch.bool)
        for k, offset in enumerate(self.offsets):
            here = (slice(None), *(slice(-o, None) for o in offset))
            there = (slice(None), *(slice(None, o if o else None) for o in offset))
            a, b = labels[here], labels[there]
            out[(slice(None), k, *here[1:])] = (a == b) & (a != 0)
        return torch.where(out, 1000.0, -1000.0)


def save_checkpoint(path: Path, model: ModelSettings, seed: int = 0) -> Path:
    """A Lightning checkpoint of an untrained module for ``model`` (built as training builds it)."""
    from pipeline_lib.training.train import build_module

    torch.manual_seed(seed)
    module = build_module(model)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return path


def write_volume(store: Path, image: np.ndarray, chunks: Sequence[int] = (16, 32, 32)) -> Path:
    """A pipeline volume store with array ``image``."""
    array = create_array(store, "image", image.shape, image.dtype, chunks, (8.0, 8.0, 8.0))
    array[...] = image
    return store


def blend(
    image: np.ndarray,
    predictor: Any,
    window: Sequence[int],
    overlap: float,
    batch_size: int,
    region: Sequence[slice] | None = None,
    mode: str = "gaussian",
    padding_mode: str = "reflect",
) -> tuple[np.ndarray, ...]:
    """The outputs ``(C_i, *region)`` of :func:`blend_region` over ``region`` (default: the whole image), assembled."""
    from pipeline_lib.inference.sliding import blend_region

    region = tuple(region) if region is not None else tuple(slice(0, n) for n in image.shape)
    arrays: list[np.ndarray] = []
    with torch.inference_mode():
        for z0, outputs in blend_region(image, region, predictor, window, overlap, batch_size, mode, padding_mode):  # type: ignore[arg-type]
            if not arrays:
                arrays = [np.empty((o.shape[0], *(r.stop - r.start for r in region)), np.float32) for o in outputs]
            for array, output in zip(arrays, outputs, strict=True):
                array[:, z0 : z0 + output.shape[1]] = output.numpy()
    return tuple(arrays)
