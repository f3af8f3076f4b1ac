"""GPU throughput of the default model: training and inference voxels/s, fp32 vs bf16-mixed.

Ready to run on a CUDA machine: ``python benchmarks/gpu_throughput.py`` prints one JSON line
per measurement and a final summary line with the card's name. Without CUDA it prints a
``skipped`` line and exits 0 (``--allow-cpu`` runs the same code on the CPU with small sizes,
as a smoke test of the code path, not a measurement).

- **training**: the default model (``unet`` with the schema's defaults, built as training
  builds it) on random ``patch_shape`` batches; Adam, BCE on the affinity channels,
  ``torch.autocast`` for bf16 (fp32 master weights, as Lightning's ``bf16-mixed``); voxels/s
  = batch × patch voxels × steps / time.
- **inference**: the pipeline's sliding window (:mod:`pipeline_lib.inference`) over a random
  in-memory ``--volume`` on the GPU, Gaussian blending, ``predict`` defaults for overlap and
  batch size unless given; fp32 vs ``bf16-mixed`` autocast; voxels/s = volume voxels / time.
  Peak GPU memory (``torch.cuda.max_memory_allocated``) is reported per run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline_lib.config import ModelSettings, PredictSettings, build
from pipeline_lib.config.schema import validate_with_defaults


def default_settings(args: argparse.Namespace) -> tuple[ModelSettings, PredictSettings]:
    model: dict[str, Any] = {"architecture": args.architecture}
    if args.patch:
        model["patch_shape"] = args.patch
    predict: dict[str, Any] = {"batch_size": args.infer_batch} if args.infer_batch else {}
    if args.overlap is not None:
        predict["overlap"] = args.overlap
    config = {
        "datasets": ["x"],
        "models": {"m": model},
        "decoders": {"d": {"method": "connected_components"}},
        "predict": predict,
    }
    data = validate_with_defaults(config, "config", "gpu_throughput")
    return build(ModelSettings, data["models"]["m"]), build(PredictSettings, data["predict"])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def training_throughput(
    model: ModelSettings, dtype: torch.dtype | None, batch: int, steps: int, warmup: int, device: torch.device
) -> dict[str, Any]:
    from pipeline_lib.training.train import build_module

    torch.manual_seed(0)
    module = build_module(model).to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    n = len(model.offsets)
    image = torch.rand(batch, 1, *model.patch_shape, device=device)
    target = (torch.rand(batch, n, *model.patch_shape, device=device) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = module(image)[:, :n]
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    voxels = batch * steps * int(np.prod(model.patch_shape))
    return {"seconds": round(seconds, 3), "voxels_per_s": round(voxels / seconds), "peak_gpu_mb": peak_mb(device)}


def inference_throughput(
    model: ModelSettings,
    predict: PredictSettings,
    precision: str,
    volume: tuple[int, int, int],
    repeats: int,
    device: torch.device,
    compile: bool,
) -> dict[str, Any]:
    from pipeline_lib.inference.predictor import WindowPredictor, autocast_dtype
    from pipeline_lib.inference.sliding import blend_region, count_windows
    from pipeline_lib.training.train import build_module

    torch.manual_seed(0)
    module = build_module(model).to(device).eval()
    net: torch.nn.Module = torch.compile(module) if compile else module  # type: ignore[assignment]
    predictor = WindowPredictor([net], model.offsets, dtype=autocast_dtype(precision, model.precision, device))  # type: ignore[arg-type]
    image = np.random.default_rng(0).integers(0, 256, size=volume, dtype=np.uint8)
    window = model.patch_shape
    region = tuple(slice(0, n) for n in volume)

    def run() -> None:  # what a block job runs: uint8 windows normalised on the host, blended in z-slabs
        slabs = blend_region(
            image,
            region,
            predictor,
            window,
            predict.overlap,
            predict.batch_size,
            predict.blend,
            device=device,
            transform=lambda a: a.astype(np.float32) / np.float32(255.0),
        )
        for _ in slabs:
            pass

    run()  # warm-up (cuDNN autotuning, compilation)
    synchronize(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    return {
        "seconds": round(seconds, 3),
        "voxels_per_s": round(float(np.prod(volume)) / seconds),
        "windows": count_windows(volume, window, predict.overlap),
        "peak_gpu_mb": peak_mb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="unet")
    parser.add_argument("--patch", type=int, nargs=3, help="training patch / inference window (default: schema's)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--volume", type=int, nargs=3, default=[128, 512, 512])
    parser.add_argument("--infer-batch", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--overlap", type=float, help="default: predict.overlap of the schema")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also wrap the model in torch.compile for inference")
    parser.add_argument("--allow-cpu", action="store_true", help="smoke-test the code on the CPU (small sizes)")
    args = parser.parse_args()

    if torch.cuda.is_available():
        device = torch.device("cuda")
        card = torch.cuda.get_device_name(device)
    elif args.allow_cpu:
        device, card = torch.device("cpu"), "cpu (smoke test, not a measurement)"
    else:
        print(json.dumps({"name": "gpu_throughput", "skipped": "no CUDA device available"}))
        return
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, predict = default_settings(args)
    summary: dict[str, Any] = {
        "name": "gpu_throughput",
        "device": card,
        "torch": torch.__version__,
        "architecture": model.architecture,
        "patch_shape": list(model.patch_shape),
    }
    for label, dtype, precision in (("fp32", None, "32"), ("bf16", torch.bfloat16, "bf16-mixed")):
        train = training_throughput(model, dtype, args.train_batch, args.train_steps, args.warmup, device)
        print(json.dumps({"name": f"train_{label}", "batch": args.train_batch, **train}), flush=True)
        infer = inference_throughput(model, predict, precision, tuple(args.volume), args.repeats, device, False)
        print(json.dumps({"name": f"infer_{label}", "volume": args.volume, **infer}), flush=True)
        summary[f"train_voxels_per_s_{label}"] = train["voxels_per_s"]
        summary[f"infer_voxels_per_s_{label}"] = infer["voxels_per_s"]
        if args.compile:
            compiled = inference_throughput(model, predict, precision, tuple(args.volume), args.repeats, device, True)
            print(json.dumps({"name": f"infer_{label}_compiled", "volume": args.volume, **compiled}), flush=True)
            summary[f"infer_voxels_per_s_{label}_compiled"] = compiled["voxels_per_s"]
    summary["train_bf16_speedup"] = round(summary["train_voxels_per_s_bf16"] / summary["train_voxels_per_s_fp32"], 2)
    summary["infer_bf16_speedup"] = round(summary["infer_voxels_per_s_bf16"] / summary["infer_voxels_per_s_fp32"], 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
