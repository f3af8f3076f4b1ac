"""Training-patch loader throughput versus the training step rate of the default model.

Measures (1) patches/s of the training DataLoader with *every* augmentation switched on
(probability ``--p`` each, elastic included), the default patch size and ``--workers``
workers, and (2) patches/s consumed by training steps (forward, backward, optimizer step)
of the default model (``models.demo`` of config/config.yaml) on a fixed batch. The loader
must produce at least 2x what training consumes.

Usage: ``.venv/bin/python benchmarks/bench_loader.py [--batches 40] [--steps 30]``.
The last stdout line is one JSON object: name, loader_seconds, train_seconds,
loader_patches_per_s, train_patches_per_s, ratio (loader / train), peak_rss_mb.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from pipeline_lib.config import load_config
from pipeline_lib.config.settings import AugmentSettings
from pipeline_lib.data.synthetic import generate
from pipeline_lib.io.volumes import create_array
from pipeline_lib.training.data import RandomPatches
from pipeline_lib.training.train import build_module, patch_spec


def full_augmentation(augment: AugmentSettings, p: float) -> AugmentSettings:
    """Every augmentation on with probability ``p`` (parameters as configured)."""
    chances = [f.name for f in dataclasses.fields(augment) if dataclasses.is_dataclass(getattr(augment, f.name))]
    return dataclasses.replace(augment, **{name: dataclasses.replace(getattr(augment, name), p=p) for name in chances})


def write_volume(path: Path, shape: tuple[int, int, int]) -> Path:
    volume = generate(shape, seed=1)
    for name, array in (("image", volume.image), ("labels", volume.labels)):
        create_array(path, name, array.shape, array.dtype, (32, 128, 128), (8.0, 8.0, 8.0))[...] = array
    return path


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + children) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40, help="loader batches timed (after 5 warm-up)")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed (after 3 warm-up)")
    parser.add_argument("--p", type=float, default=0.5, help="probability of every augmentation")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training steps")
    args = parser.parse_args()

    with open(args.config) as f:
        settings = load_config(yaml.safe_load(f), check_files=False).models[args.model]
    settings = dataclasses.replace(settings, augment=full_augmentation(settings.augment, args.p))
    batch = settings.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        store = write_volume(Path(tmp) / "train.zarr", (48, 128, 128))
        dataset = RandomPatches([store], patch_spec(settings), settings.seed, settings.augment, settings.sampling)
        loader = DataLoader(dataset, batch_size=batch, num_workers=args.workers, persistent_workers=args.workers > 0)
        batches = iter(loader)
        for _ in range(5):
            sample = next(batches)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        loader_seconds = time.perf_counter() - start
        del batches, loader

    torch.set_num_threads(args.threads)
    module = build_module(settings)
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.learning_rate)
    module.train()

    def step() -> None:
        loss = module._step(sample, "bench")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train_seconds = time.perf_counter() - start

    loader_rate = args.batches * batch / loader_seconds
    train_rate = args.steps * batch / train_seconds
    print(
        f"loader: {loader_rate:.1f} patches/s ({args.workers} workers, every augmentation p={args.p}); "
        f"training: {train_rate:.1f} patches/s ({args.steps / train_seconds:.1f} steps/s)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "name": "bench_loader",
                "patch_shape": list(settings.patch_shape),
                "batch_size": batch,
                "workers": args.workers,
                "loader_seconds": round(loader_seconds, 3),
                "train_seconds": round(train_seconds, 3),
                "loader_patches_per_s": round(loader_rate, 2),
                "train_patches_per_s": round(train_rate, 2),
                "train_steps_per_s": round(args.steps / train_seconds, 2),
                "peak_rss_mb": peak_rss_mb(),
                "ratio": round(loader_rate / train_rate, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
