"""Loading trained models and turning them into a window predictor for the sliding window.

A :class:`WindowPredictor` maps a batch of image windows ``(B, 1, z, y, x)`` to affinity
probabilities ``(B, C, z, y, x)`` (sigmoid of the logits, float32). Models follow the
contract of :class:`~pipeline_lib.training.module.AffinityModule`: in eval mode
``model(image)`` returns logits whose first ``len(offsets)`` channels are the affinities in
``offsets`` order; any further channels (extra training targets) are ignored here.

- **precision**: the forward pass runs under ``torch.autocast`` in fp16 or bf16 when asked
  (see :func:`autocast_dtype`); outputs are cast back to float32 before anything else;
- **test-time augmentation**: every variant of :mod:`pipeline_lib.inference.tta` is run and
  inverted exactly, then combined (mean/min/max over the variants that have a value);
- **ensemble**: with several models, their TTA-combined probabilities are averaged;
- **Monte-Carlo dropout**: with ``mc_samples = N > 0`` the dropout layers stay active and
  the predictor returns ``(mean, variance)`` over N stochastic passes of the above;
- **memory format**: with ``channels_last`` the windows (and, through :func:`load_models`,
  the weights) are in ``torch.channels_last_3d`` layout, which cuDNN's tensor-core
  convolutions prefer under 16-bit autocast (:func:`use_channels_last`);
- **batch size**: :meth:`WindowPredictor.batch_size` turns ``predict.batch_size: auto`` into
  windows per forward pass: on CUDA half the free GPU memory divided by the measured peak
  memory per window of this predictor (TTA, ensemble and MC passes included) plus what
  blending a window takes on the GPU, on the CPU
  :data:`~pipeline_lib.devices.CPU_BATCH_SIZE`.

Everything runs on the device of the windows it is given (the models' device); nothing is
copied to the host here.

It is always called inside ``torch.inference_mode()`` by the sliding window.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from pipeline_lib.config import build
from pipeline_lib.config.schema import definition_defaults
from pipeline_lib.config.settings import NetworkSettings
from pipeline_lib.devices import CPU_BATCH_SIZE, batch_for_memory, probe_bytes_per_item
from pipeline_lib.errors import ConfigError, DataError
from pipeline_lib.inference.tta import Combiner, invert
from pipeline_lib.models import create_network
from pipeline_lib.offsets import Combine, Variant, inverse_plan

log = logging.getLogger(__name__)

Precision = Literal["auto", "32", "16-mixed", "bf16-mixed"]
Checkpoints = str | Path | Sequence[str | Path]


def checkpoint_list(checkpoints: Checkpoints) -> list[Path]:
    """One checkpoint path or several (an ensemble) as a list of paths."""
    if isinstance(checkpoints, str | Path):
        return [Path(checkpoints)]
    paths = [Path(c) for c in checkpoints]
    if not paths:
        raise ConfigError("prediction needs at least one checkpoint")
    return paths


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and ``device`` is None, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def network_settings(hparams: dict[str, Any]) -> NetworkSettings:
    """The network settings saved in a checkpoint. Model keys added to the schema after the
    checkpoint was written (``targets[].lsd_sigma``, ...) take their schema defaults, so
    checkpoints of earlier versions still load."""
    return build(NetworkSettings, definition_defaults(hparams, "model"))


class TrainedNetwork(nn.Module):
    """The network of a training checkpoint, for inference (no Lightning needed to load it).

    ``forward(image)`` returns the final logits ``(b, C, z, y, x)`` like
    :class:`~pipeline_lib.training.module.AffinityModule` (never the deep-supervision
    outputs); ``offsets`` are the affinity offsets of channels ``0 .. len(offsets) - 1`` and
    ``hparams`` the module's saved hyperparameters. Its state dict has the module's keys.
    """

    def __init__(self, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.hparams = hparams
        self.network = network_settings(hparams)
        self.offsets = [tuple(int(v) for v in o) for o in self.network.offsets]
        self.net = create_network(self.network)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.net(image)
        return out[0] if isinstance(out, list) else out


def read_checkpoint(checkpoint: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The contents of a checkpoint file; a truncated or damaged one is a
    :class:`~pipeline_lib.errors.DataError` that names it and the command that retrains."""
    path = Path(checkpoint)
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
        ckpt["hyper_parameters"], ckpt["state_dict"]  # noqa: B018 (both must be there)
    except (RuntimeError, OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as e:
        first = " ".join(str(e).split())[:200]
        raise DataError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {first}); retrain with: "
            f"rm -r {path.parent} and rerun the same snakemake command"
        ) from e
    return ckpt


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> TrainedNetwork:
    """The trained network of a Lightning checkpoint of ``AffinityModule``, in eval mode on ``device``.

    Reads ``hyper_parameters`` and ``state_dict`` with ``torch.load(weights_only=True)`` (as
    Lightning does) and builds the network from the model registry, so inference does not
    import Lightning; every weight must match (strict loading).
    """
    ckpt = read_checkpoint(checkpoint, device)
    model = TrainedNetwork(dict(ckpt["hyper_parameters"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    model.eval()
    return model


def load_models(
    checkpoints: Checkpoints,
    offsets: Sequence[Sequence[int]],
    device: torch.device,
    compile: bool = False,
    channels_last: bool = False,
) -> list[nn.Module]:
    """The modules of one or several checkpoints; all must predict ``offsets`` in this order."""
    expected = [tuple(int(v) for v in o) for o in offsets]
    models: list[nn.Module] = []
    for path in checkpoint_list(checkpoints):
        module = load_model(path, device)
        if list(module.offsets) != expected:
            raise ConfigError(f"{path}: the checkpoint predicts offsets {module.offsets}, the config says {expected}")
        if channels_last:
            module.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        models.append(torch.compile(module) if compile else module)  # type: ignore[arg-type]
    return models


def use_channels_last(memory_format: str, dtype: torch.dtype | None, device: torch.device) -> bool:
    """Whether windows run in ``channels_last_3d`` layout: ``auto`` means on CUDA under 16-bit autocast."""
    if memory_format == "auto":
        return device.type == "cuda" and dtype is not None
    return memory_format == "channels_last_3d"


def autocast_dtype(precision: Precision, model_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference, or None for plain fp32.

    ``auto`` follows the model's training precision on CUDA and is fp32 on the CPU; an
    explicit ``bf16-mixed`` is honoured on the CPU too, ``16-mixed`` falls back to fp32 there
    (CPU fp16 autocast is slow and poorly supported).
    """
    if precision == "auto":
        precision = "32" if device.type != "cuda" else model_precision  # type: ignore[assignment]
    if precision == "bf16-mixed":
        return torch.bfloat16
    if precision == "16-mixed":
        if device.type != "cuda":
            log.warning("fp16 autocast requested on %s: predicting in fp32", device)
            return None
        return torch.float16
    return None


def enable_mc_dropout(model: nn.Module) -> int:
    """Put the dropout layers of an eval-mode model back in training mode; returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            m.train()
            n += 1
    return n


class WindowPredictor:
    """Callable for MONAI's sliding window: windows → affinity probabilities (see module doc)."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        offsets: Sequence[Sequence[int]],
        tta_variants: Sequence[Variant] = (Variant(),),
        combine: Combine = "mean",
        dtype: torch.dtype | None = None,
        mc_samples: int = 0,
        channels_last: bool = False,
    ) -> None:
        if not models:
            raise ValueError("WindowPredictor needs at least one model")
        if not tta_variants or tta_variants[0] != Variant():
            raise ValueError("the identity must be the first TTA variant")
        self.models = list(models)
        self.n_affinities = len(offsets)
        self.variants = list(tta_variants)
        self.plans = [inverse_plan(v, offsets) for v in self.variants]
        self.complete = [all(p.shift is None for p in plan) for plan in self.plans]
        self.combine = combine
        self.dtype = dtype
        self.mc_samples = mc_samples
        self.channels_last = channels_last
        self._auto_batch: dict[tuple[int, ...], int] = {}
        if mc_samples > 0:
            for i, model in enumerate(self.models):
                if enable_mc_dropout(model) == 0:
                    which = f"ensemble member {i + 1} of {len(self.models)}" if len(self.models) > 1 else "the model"
                    raise ConfigError(
                        f"config key 'predict.mc_dropout_samples': {which} has no dropout layers "
                        "(set architecture_params.dropout > 0 when training, or set it to 0)"
                    )

    @property
    def passes_per_window(self) -> int:
        """Forward passes per window: models × variants × max(1, mc_samples)."""
        return len(self.models) * len(self.variants) * max(1, self.mc_samples)

    def batch_size(self, setting: int | str, window: Sequence[int], device: torch.device) -> int:
        """Windows per forward pass for ``predict.batch_size`` (an int, or ``auto``: see the module doc)."""
        if setting != "auto":
            return int(setting)
        if device.type != "cuda":
            return CPU_BATCH_SIZE
        key = tuple(int(w) for w in window)
        if key not in self._auto_batch:
            free, _ = torch.cuda.mem_get_info(device)

            def run(n: int) -> None:  # leaves the random state (MC dropout samples) untouched
                with torch.random.fork_rng(devices=[device]), torch.inference_mode():
                    self(torch.zeros((n, 1, *key), device=device))

            # blending a window on the GPU adds int64 indices and float32 weighted copies per channel
            channels = self.n_affinities * (2 if self.mc_samples > 0 else 1)
            blending = math.prod(key) * (16 * channels + 12)
            self._auto_batch[key] = batch_for_memory(free, probe_bytes_per_item(run, device) + blending)
            log.info("predict.batch_size auto: %d windows of %s per forward pass", self._auto_batch[key], key)
        return self._auto_batch[key]

    def _forward(self, model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the affinity logits (the first ``len(offsets)`` channels; others are dropped)."""
        if self.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        if self.dtype is None:
            logits = model(windows)
        else:
            with torch.autocast(windows.device.type, dtype=self.dtype):
                logits = model(windows)
        return torch.sigmoid(logits[:, : self.n_affinities].float())

    def _one_pass(self, windows: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for model in self.models:
            combiner = Combiner(self.combine)
            for variant, plan, complete in zip(self.variants, self.plans, self.complete, strict=True):
                combiner.add(invert(self._forward(model, variant.forward(windows)), variant, plan), complete)
            result = combiner.result()
            total = result if total is None else total + result
        assert total is not None
        return total / len(self.models) if len(self.models) > 1 else total

    def __call__(self, windows: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.mc_samples <= 0:
            return self._one_pass(windows)
        mean = torch.zeros(())
        sq = torch.zeros(())
        for _ in range(self.mc_samples):
            p = self._one_pass(windows)
            mean = mean + p
            sq = sq + p * p
        mean = mean / self.mc_samples
        variance = (sq / self.mc_samples - mean * mean).clamp_min(0.0)
        return mean, variance
