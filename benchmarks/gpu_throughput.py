"""GPU figures of issue 19: prediction through ``predict_blocks`` and training steps/s, one JSON line each.

Ready to run on a CUDA machine (``benchmarks/gpu_checks.sh`` runs it): without CUDA it prints
a ``skipped`` line and exits 0; ``--allow-cpu`` runs the same code on the CPU at small sizes
as a smoke test of the code path (its figures are not measurements).

- **inference** (``infer_<window>_<fp32|bf16>``): the default ``unet`` with a ``--window``
  patch shape, untrained (speed does not depend on the weights), saved as a checkpoint; a
  random uint8 zarr volume of ``--volume``; :func:`~pipeline_lib.inference.predict.prepare_prediction`,
  :func:`~pipeline_lib.inference.predict.predict_blocks` over every block and
  :func:`~pipeline_lib.inference.predict.finish_prediction`, ``predict`` defaults (overlap 0.5,
  Gaussian blending, uint8 zarr out, ``batch_size: auto``, ``memory_format: auto``) with
  ``precision`` 32 or bf16-mixed. Each is run twice and the second run counts (the first
  autotunes cuDNN and probes the batch size). Mvoxel/s = volume voxels / seconds of the
  three calls (checkpoint loading, zarr reads and writes included).
- **training** (``train_loader`` and ``train_on_device``): ``train_model`` itself on a
  synthetic labelled zarr volume with config/gala.yaml's augmentations (batched on the
  device by default), its precision, ``--train-batch`` patches of ``--train-patch``,
  ``num_workers: auto`` with the node's CPUs as the job's threads; against the same module
  trained by a Lightning ``Trainer`` on one batch already on the device. Steps/s are timed
  from step ``--train-warmup`` to the last step by a callback; ``ratio`` = loader / on-device (the goal is ≥ 0.8).
- **utilisation**: with ``nvidia-smi`` on the path, each figure carries the mean GPU
  utilisation (%) sampled every 0.2 s while it ran (``gpu_util_mean``; null without it).

The last line is a summary: ``name``, device, torch version, every figure and the bf16/fp32
and loader/on-device ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
GALA_AUGMENT = {  # config/gala.yaml's augmentations (read from the file when it is there)
    "flip": {"p": 0.5},
    "transpose": {"p": 0.5},
    "gamma": {"p": 0.3},
    "contrast": {"p": 0.3},
    "brightness": {"p": 0.3},
    "noise": {"p": 0.2, "std": 0.05},
    "missing_section": {"p": 0.1},
    "misalignment": {"p": 0.1, "max_shift": 3},
}


class Utilisation:
    """Mean GPU utilisation from ``nvidia-smi`` sampled in a thread while the block runs (None without it)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.wait(0.2):
            result = subprocess.run(query, capture_output=True, text=True)
            if result.returncode == 0 and result.stdout.strip():
                self.samples.append(float(result.stdout.split()[0]))

    def __enter__(self) -> Utilisation:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def config_entry(overrides: dict[str, Any]) -> dict[str, Any]:
    """Validated config data of one model ``m`` with ``overrides`` (models and predict keys)."""
    from pipeline_lib.config.schema import validate_with_defaults

    config = {
        "datasets": ["x"],
        "models": {"m": {"architecture": "unet", **overrides.get("model", {})}},
        "decoders": {"d": {"method": "connected_components"}},
        "predict": overrides.get("predict", {}),
    }
    return validate_with_defaults(config, "config", "gpu_throughput")


def save_checkpoint(path: Path, model: Any) -> Path:
    from pipeline_lib.training.train import build_module

    torch.manual_seed(0)
    module = build_module(model)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def inference_figure(
    work: Path, volume: Path, window: list[int], precision: str, device: torch.device, util: bool
) -> dict[str, Any]:
    from pipeline_lib.config import ModelSettings, PredictSettings, build
    from pipeline_lib.inference.predict import finish_prediction, predict_blocks, prediction_grid, prepare_prediction
    from pipeline_lib.io.volumes import open_array, partial_path

    data = config_entry({"model": {"patch_shape": window}, "predict": {"precision": precision}})
    model, predict = build(ModelSettings, data["models"]["m"]), build(PredictSettings, data["predict"])
    ckpt = work / f"unet_{'x'.join(map(str, window))}.ckpt"
    if not ckpt.exists():
        save_checkpoint(ckpt, model)
    shape = open_array(volume, "image").shape
    blocks = list(range(len(prediction_grid(shape, predict))))
    seconds, util_mean = 0.0, None
    for attempt in range(2):  # the first run autotunes cuDNN and probes the batch size
        out = work / f"affinities_{attempt}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with Utilisation(util and attempt == 1) as meter:
            start = time.perf_counter()
            partial = prepare_prediction(volume, ckpt, partial_path(out), model, predict)
            predict_blocks(volume, ckpt, partial, blocks, model, predict, device=str(device))
            finish_prediction(partial)
            synchronize()
            seconds = time.perf_counter() - start
        util_mean = meter.mean
        shutil.rmtree(out, ignore_errors=True)
    voxels = float(np.prod(shape))
    return {
        "name": f"infer_{'x'.join(map(str, window))}_{'bf16' if precision == 'bf16-mixed' else 'fp32'}",
        "volume": list(shape),
        "blocks": len(blocks),
        "seconds": round(seconds, 3),
        "mvoxel_per_s": round(voxels / seconds / 1e6, 4),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "gpu_util_mean": util_mean,
    }


class StepTimer:
    """Lightning callback: wall time from the end of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def callback(self) -> Any:
        from lightning.pytorch.callbacks import Callback

        timer = self

        class _Timer(Callback):
            def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
                step = trainer.global_step
                if step == timer.warmup:
                    synchronize()
                    timer.start = time.perf_counter()
                elif step > timer.warmup:
                    synchronize()
                    timer.end, timer.steps = time.perf_counter(), step - timer.warmup

        return _Timer()

    @property
    def steps_per_s(self) -> float:
        return round(self.steps / (self.end - self.start), 2) if self.steps else 0.0


def gala_augment(patch_shape: list[int]) -> dict[str, Any]:
    """config/gala.yaml's augmentations for patches of ``patch_shape``: its transpose of every
    axis order needs a cube, so a patch that is not one gets the y–x transpose instead."""
    import yaml

    augment = GALA_AUGMENT
    path = ROOT / "config" / "gala.yaml"
    if path.exists():
        models = yaml.safe_load(path.read_text()).get("models", {})
        augment = next((dict(entry["augment"]) for entry in models.values() if "augment" in entry), GALA_AUGMENT)
    transpose = augment.get("transpose", {})
    if transpose.get("axes") == "zyx" and len(set(patch_shape)) != 1:
        augment = {**augment, "transpose": {**transpose, "axes": "yx"}}
    return augment


def training_figures(work: Path, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import lightning as L
    from torch.utils.data import DataLoader, IterableDataset

    from pipeline_lib.config import ModelSettings, build
    from pipeline_lib.data.synthetic import generate
    from pipeline_lib.devices import available_cpus
    from pipeline_lib.io.volumes import create_array
    from pipeline_lib.training.train import build_module, train_model

    steps = args.train_warmup + args.train_steps
    model_entry = {
        "patch_shape": args.train_patch,
        "batch_size": args.train_batch,
        "max_steps": steps,
        "val_every_n_steps": steps,
        "precision": args.train_precision,
        "augment": gala_augment(args.train_patch),
    }
    settings = build(ModelSettings, config_entry({"model": model_entry})["models"]["m"])
    synthetic = generate(tuple(args.train_volume), seed=1)  # type: ignore[arg-type]
    store = work / "train.zarr"
    for name, array in (("image", synthetic.image), ("labels", synthetic.labels)):
        create_array(store, name, array.shape, array.dtype, (32, 128, 128), (8.0, 8.0, 8.0))[...] = array

    loader_timer = StepTimer(args.train_warmup)
    with Utilisation(args.util) as loader_util:
        cpus = available_cpus()  # the node's CPUs, as a train job given all of them (num_workers: auto uses them)
        train_model(settings, [store], [], work / "trained", threads=cpus, callbacks=[loader_timer.callback()])

    module = build_module(settings)
    n = sum(int(t.type == "affinity") * len(settings.offsets) or 1 for t in settings.targets)
    shape = (args.train_batch, n, *args.train_patch)
    batch = {
        "image": torch.rand(args.train_batch, 1, *args.train_patch, device=device),
        "target": (torch.rand(shape, device=device) > 0.5).float(),
        "weight": torch.ones(shape, device=device),
    }

    class SameBatch(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
            while True:
                yield batch

    device_timer = StepTimer(args.train_warmup)
    trainer = L.Trainer(
        max_steps=steps,
        precision=settings.precision,  # type: ignore[arg-type]
        accelerator=device.type,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[device_timer.callback()],
    )
    with Utilisation(args.util) as device_util:
        trainer.fit(module, DataLoader(SameBatch(), batch_size=None))
    common = {"patch_shape": args.train_patch, "batch": args.train_batch, "precision": settings.precision}
    return [
        {"name": "train_loader", **common, "steps_per_s": loader_timer.steps_per_s, "gpu_util_mean": loader_util.mean},
        {
            "name": "train_on_device",
            **common,
            "steps_per_s": device_timer.steps_per_s,
            "gpu_util_mean": device_util.mean,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=int, nargs=3, default=[128, 512, 512], help="inference volume (z y x)")
    parser.add_argument("--windows", nargs="+", default=["16x64x64", "32x128x128"], help="inference windows")
    parser.add_argument("--train-patch", type=int, nargs=3, default=[32, 96, 96])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--train-warmup", type=int, default=10, help="untimed first steps")
    parser.add_argument("--train-volume", type=int, nargs=3, default=[96, 384, 384], help="synthetic training volume")
    parser.add_argument("--train-precision", default="bf16-mixed", choices=["32", "16-mixed", "bf16-mixed"])
    parser.add_argument("--only", choices=["infer", "train"], help="one half of the figures")
    parser.add_argument("--allow-cpu", action="store_true", help="smoke-test on the CPU at small sizes")
    args = parser.parse_args()

    if torch.cuda.is_available():
        device, card = torch.device("cuda"), torch.cuda.get_device_name(0)
    elif args.allow_cpu:
        device, card = torch.device("cpu"), "cpu (smoke test, not a measurement)"
        args.volume, args.windows = [8, 32, 32], ["8x16x16"]
        args.train_patch, args.train_batch, args.train_steps, args.train_warmup = [8, 16, 16], 2, 2, 1
        args.train_volume, args.train_precision = [16, 48, 48], "32"
    else:
        print(json.dumps({"name": "gpu_throughput", "skipped": "no CUDA device available"}))
        return
    args.util = device.type == "cuda"
    summary: dict[str, Any] = {"name": "gpu_throughput", "device": card, "torch": torch.__version__}
    work = Path(tempfile.mkdtemp(prefix="gpu_throughput_"))
    try:
        if args.only != "train":
            from pipeline_lib.io.volumes import create_array

            volume = create_array(work / "volume.zarr", "image", args.volume, np.uint8, (32, 128, 128), (8.0, 8.0, 8.0))
            volume[...] = np.random.default_rng(0).integers(0, 256, size=args.volume, dtype=np.uint8)
            for window in args.windows:
                shape = [int(v) for v in window.split("x")]
                figures = {}
                for precision in ("32", "bf16-mixed"):
                    line = inference_figure(work, work / "volume.zarr", shape, precision, device, args.util)
                    print(json.dumps(line), flush=True)
                    figures[precision] = line["mvoxel_per_s"]
                    summary[line["name"] + "_mvoxel_per_s"] = line["mvoxel_per_s"]
                summary[f"infer_{window}_bf16_over_fp32"] = round(figures["bf16-mixed"] / figures["32"], 2)
        if args.only != "infer":
            loader, on_device = training_figures(work, args, device)
            for line in (loader, on_device):
                print(json.dumps(line), flush=True)
            summary["train_loader_steps_per_s"] = loader["steps_per_s"]
            summary["train_on_device_steps_per_s"] = on_device["steps_per_s"]
            summary["train_ratio"] = round(loader["steps_per_s"] / max(on_device["steps_per_s"], 1e-9), 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
