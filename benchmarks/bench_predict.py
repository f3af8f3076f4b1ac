"""Prediction benchmark: blockwise zarr-to-zarr prediction against MONAI in memory, and TTA cost.

Comparisons (each one JSON line on stdout; the last line summarises):

1. ``blockwise_vs_monai``: :func:`pipeline_lib.inference.predict.predict_volume` (zarr in,
   blocks of ``--block`` with their window contexts, uint8 zarr out) against the baseline:
   read the whole image into memory, MONAI ``sliding_window_inference`` over it (same
   model, window, overlap, batch size, Gaussian blending), write the same uint8 zarr (same
   chunks and codec). Each runs in a fresh subprocess; time excludes interpreter start and
   imports, includes model loading, reading and writing. Peak memory is the child's ``VmHWM`` (Linux
   ``ru_maxrss`` would include the parent's pages across fork + exec; both are reported).
   Both sides load the checkpoint with the same ``load_model`` and import torch and MONAI,
   a shared floor of ~400 MB; the rest is what each side holds while predicting.
2. ``tta``: blockwise prediction of a ``--tta-shape`` volume with TTA (all combinations of
   ``--tta-flip`` and, with ``--tta-transpose``, the y–x swap: k variants) against one pass;
   the cost ratio per variant should be ≤ 1.1.

The model is the schema's default ``unet`` (untrained weights: speed does not depend on
them) predicting the default offsets. Run: ``.venv/bin/python benchmarks/bench_predict.py``
(``--shape 128 512 512`` is the issue's size; smaller shapes for a quick look).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def settings(args: argparse.Namespace, tta: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Default model settings and predict settings for the benchmark (validated by the schema)."""
    from pipeline_lib.config import ModelSettings, PredictSettings, build
    from pipeline_lib.config.schema import validate_with_defaults

    config = {
        "datasets": ["bench"],
        "models": {"bench": {"architecture": "unet", "patch_shape": list(args.window)}},
        "decoders": {"d": {"method": "connected_components"}},
        "predict": {
            "block_shape": list(args.block),
            "chunk_shape": list(args.chunk),
            "overlap": args.overlap,
            "batch_size": args.batch_size,
            "dtype": "uint8",
            "tta": tta or {},
        },
    }
    data = validate_with_defaults(config, "config", "bench")
    return build(ModelSettings, data["models"]["bench"]), build(PredictSettings, data["predict"])


def peak_memory_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"vmhwm_mb": round(hwm, 1), "ru_maxrss_mb": round(maxrss, 1)}


def child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if args.child == "baseline":
        from monai.inferers import sliding_window_inference

        from pipeline_lib.inference.predict import AFFINITIES, load_model
        from pipeline_lib.io.affinities import encode_affinities
        from pipeline_lib.io.volumes import FAST_ZSTD, create_array, normalize_image, open_array, voxel_size

        model, predict = settings(args)
        start = time.perf_counter()
        module = load_model(work / "model.ckpt")
        image = normalize_image(np.asarray(open_array(work / "volume.zarr", "image")[...]))
        with torch.inference_mode():
            out = sliding_window_inference(
                torch.from_numpy(image)[None, None],
                model.patch_shape,
                predict.batch_size,
                lambda x: torch.sigmoid(module(x)),
                predict.overlap,
                mode="gaussian",
            )
        assert isinstance(out, torch.Tensor)
        affs = encode_affinities(out[0].numpy(), "uint8")
        del out
        target = create_array(
            work / "baseline.zarr",
            AFFINITIES,
            affs.shape,
            np.uint8,
            (affs.shape[0], *predict.chunk_shape),
            voxel_size(work / "volume.zarr", "image"),
            compressors=FAST_ZSTD,  # the same stored form as ours
        )
        target[...] = affs
        seconds = time.perf_counter() - start
    else:
        from pipeline_lib.inference.predict import predict_volume

        tta = {"flip": args.tta_flip, "transpose": args.tta_transpose} if args.child == "tta" else None
        model, predict = settings(args, tta)
        volume = work / ("volume.zarr" if args.child == "ours" else "small.zarr")
        start = time.perf_counter()
        predict_volume(volume, work / "model.ckpt", work / f"{args.child}.zarr", model, predict, device="cpu")
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 2), **peak_memory_mb()}), flush=True)


def run_child(kind: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--work", str(work)]
    for name in ("shape", "window", "block", "chunk", "tta_shape", "tta_flip"):
        command += [f"--{name.replace('_', '-')}", *map(str, getattr(args, name))]
    command += ["--overlap", str(args.overlap), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    if args.tta_transpose:
        command.append("--tta-transpose")
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"benchmark child '{kind}' failed")
    shutil.rmtree(work / f"{kind}.zarr", ignore_errors=True)
    record: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return record


def best_of(kinds: list[str], args: argparse.Namespace, work: Path) -> list[dict[str, float]]:
    """Run the kinds alternately ``--repeats`` times; per kind the fastest run (its memory too)."""
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            runs[kind].append(run_child(kind, args, work))
            print(json.dumps({"run": kind, **runs[kind][-1]}), file=sys.stderr, flush=True)
    return [min(runs[k], key=lambda r: r["seconds"]) for k in kinds]


def write_inputs(args: argparse.Namespace, work: Path) -> None:
    import torch

    from pipeline_lib.io.volumes import create_array
    from pipeline_lib.training.train import build_module

    rng = np.random.default_rng(0)
    for name, shape in (("volume.zarr", args.shape), ("small.zarr", args.tta_shape)):
        array = create_array(work / name, "image", shape, np.uint8, (32, 128, 128), (8.0, 8.0, 8.0))
        for z in range(0, shape[0], 32):
            array[z : z + 32] = rng.integers(0, 256, size=(min(32, shape[0] - z), *shape[1:]), dtype=np.uint8)
    model, _ = settings(args)
    torch.manual_seed(0)
    module = build_module(model)
    import lightning

    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        work / "model.ckpt",
    )


def main() -> None:
    from pipeline_lib.config.schema import schema_defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 512, 512])
    parser.add_argument("--window", type=int, nargs=3, default=[16, 64, 64], help="the default model's patch_shape")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--block", type=int, nargs=3, default=[128, 256, 256])
    parser.add_argument("--chunk", type=int, nargs=3, default=schema_defaults("predict")["chunk_shape"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (2 threads on a busy 2-core machine are erratic)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating; the fastest counts")
    parser.add_argument("--tta-shape", type=int, nargs=3, default=[32, 256, 256])
    parser.add_argument("--tta-flip", nargs="*", default=["y", "x"])
    parser.add_argument("--tta-transpose", action="store_true")
    parser.add_argument("--child", choices=["ours", "baseline", "plain", "tta"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    try:
        write_inputs(args, work)
        mvox = float(np.prod(args.shape)) / 1e6
        baseline, ours = best_of(["baseline", "ours"], args, work)
        main_line = {
            "name": "blockwise_vs_monai",
            "shape": args.shape,
            "window": args.window,
            "overlap": args.overlap,
            "block": args.block,
            "seconds_ours": ours["seconds"],
            "seconds_baseline": baseline["seconds"],
            "mvox_per_s_ours": round(mvox / ours["seconds"], 3),
            "peak_rss_mb_ours": ours["vmhwm_mb"],
            "peak_rss_mb_baseline": baseline["vmhwm_mb"],
            "ru_maxrss_mb_ours": ours["ru_maxrss_mb"],
            "ru_maxrss_mb_baseline": baseline["ru_maxrss_mb"],
            "ratio": round(ours["seconds"] / baseline["seconds"], 3),
            "memory_ratio": round(ours["vmhwm_mb"] / baseline["vmhwm_mb"], 3),
        }
        print(json.dumps(main_line), flush=True)

        k = 2 ** (len(set(args.tta_flip)) + int(args.tta_transpose))
        plain, tta = best_of(["plain", "tta"], args, work)
        tta_line = {
            "name": "tta_cost",
            "shape": args.tta_shape,
            "variants": k,
            "seconds_one_pass": plain["seconds"],
            "seconds_tta": tta["seconds"],
            "ratio_per_variant": round(tta["seconds"] / (k * plain["seconds"]), 3),
        }
        print(json.dumps(tta_line), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "name": "bench_predict",
        "shape": args.shape,
        "seconds_ours": main_line["seconds_ours"],
        "seconds_baseline": main_line["seconds_baseline"],
        "peak_rss_mb_ours": main_line["peak_rss_mb_ours"],
        "peak_rss_mb_baseline": main_line["peak_rss_mb_baseline"],
        "ratio": main_line["ratio"],
        "memory_ratio": main_line["memory_ratio"],
        "tta_variants": k,
        "tta_ratio_per_variant": tta_line["ratio_per_variant"],
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
