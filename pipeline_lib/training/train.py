"""Train a model with Lightning, resumable from its last checkpoint.

Output folder of a model::

    out_dir/best.ckpt        the checkpoint downstream stages use (best validation loss,
                             or the final one when there is no validation data)
    out_dir/metrics.csv      every logged value, all resumed runs merged
    out_dir/loss.png         training and validation loss curves
    out_dir/checkpoints/<settings hash>/last.ckpt   resume state (not a stage output)

Rerunning after the job was killed resumes from ``last.ckpt`` of the same settings (same
hash) with optimizer, scheduler and step restored; changed settings start afresh in a new
folder. A non-finite loss or gradient stops training with a :class:`TrainingDiverged` naming
the step, the loss terms and the last good checkpoint.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.fabric.plugins.environments import ClusterEnvironment, LightningEnvironment
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from pipeline_lib.config import ModelSettings
from pipeline_lib.errors import ConfigError
from pipeline_lib.io.volumes import atomic_file
from pipeline_lib.provenance import plain_data
from pipeline_lib.training.data import FixedPatches, PatchSpec, RandomPatches
from pipeline_lib.training.module import AffinityModule, TrainingDiverged
from pipeline_lib.training.plots import plot_losses

log = logging.getLogger(__name__)


def settings_hash(settings: ModelSettings, train_stores: Sequence[Path], val_stores: Sequence[Path]) -> str:
    record = {
        "settings": plain_data(settings),
        "train": sorted(map(str, train_stores)),
        "val": sorted(map(str, val_stores)),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def cluster_environment(environ: dict[str, str] | None = None) -> list[ClusterEnvironment]:
    """How Lightning finds its DDP processes.

    A Snakemake SLURM job is one task that owns all the GPUs SLURM gave it. With one task
    per node, Lightning must launch its own process per visible GPU (``LightningEnvironment``)
    instead of waiting for SLURM to start them; when the job runs one task per GPU
    (``--ntasks-per-node`` = GPUs), Lightning's own SLURM detection is right.
    """
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env:
        return []
    tasks = int(env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_NTASKS", "1")))
    return [LightningEnvironment()] if tasks == 1 else []


def build_module(settings: ModelSettings) -> AffinityModule:
    plain = plain_data(settings)
    return AffinityModule(
        architecture=settings.architecture,
        architecture_params=settings.architecture_params,
        offsets=settings.offsets,
        targets=plain["targets"],
        learning_rate=settings.learning_rate,
        boundary_weight=settings.boundary_weight,
        optimizer=plain["optimizer"],
        lr_schedule=plain["lr_schedule"],
        deep_supervision=plain["deep_supervision"],
        max_steps=settings.max_steps,
        val_every_n_steps=settings.val_every_n_steps,
    )


def patch_spec(settings: ModelSettings) -> PatchSpec:
    distance = [t.distance_scale for t in settings.targets if t.type == "distance"]
    return PatchSpec(
        settings.patch_shape,
        settings.offsets,
        tuple(t.type for t in settings.targets),
        distance[0] if distance else 5.0,
    )


def check_validation(settings: ModelSettings, val_stores: Sequence[Path]) -> None:
    """Errors, before any training, for settings that need validation data when there is none."""
    if val_stores:
        return
    if settings.require_validation:
        raise ConfigError("model key 'require_validation' is true but no selected dataset has role 'val'")
    if settings.lr_schedule.name == "plateau":
        raise ConfigError("model key 'lr_schedule.name': 'plateau' needs a dataset with role 'val'")


def merge_metrics(log_dir: Path, output: Path) -> pd.DataFrame:
    """All ``version_*/metrics.csv`` of resumed runs as one table (later runs win per step)."""
    paths = sorted(log_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    frames = [pd.read_csv(p) for p in paths]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": []})
    with atomic_file(output) as tmp:
        table.to_csv(tmp, index=False)
    return table


def train_model(
    settings: ModelSettings,
    train_stores: Sequence[str | Path],
    val_stores: Sequence[str | Path],
    out_dir: str | Path,
    threads: int = 1,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train (or resume) and write ``best.ckpt``, ``metrics.csv`` and ``loss.png`` in ``out_dir``.

    ``callbacks`` are extra Lightning callbacks (tests use them to observe or interrupt a run).
    """
    out_dir = Path(out_dir)
    train_paths, val_paths = [Path(s) for s in train_stores], [Path(s) for s in val_stores]
    check_validation(settings, val_paths)
    run_dir = out_dir / "checkpoints" / settings_hash(settings, train_paths, val_paths)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    L.seed_everything(settings.seed, workers=True, verbose=False)

    spec = patch_spec(settings)
    train_loader = DataLoader(
        RandomPatches(train_paths, spec, settings.seed, settings.augment, settings.sampling),
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        persistent_workers=settings.num_workers > 0,
    )
    val_loader = None
    if val_paths:
        patches = FixedPatches(val_paths, spec, settings.val_batches * settings.batch_size, settings.seed + 1)
        val_loader = DataLoader(patches, batch_size=settings.batch_size)
    else:
        log.info("no dataset with role 'val': training without validation; best.ckpt is the final checkpoint")

    checkpoint = ModelCheckpoint(
        dirpath=run_dir,
        filename="best",
        monitor="val/loss" if val_loader is not None else None,
        save_last=True,
        every_n_train_steps=None if val_loader is not None else settings.val_every_n_steps,
    )
    trainer = L.Trainer(
        max_steps=settings.max_steps,
        max_time=datetime.timedelta(minutes=settings.max_minutes) if settings.max_minutes else None,
        precision=settings.precision,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step"), *callbacks],
        plugins=list(cluster_environment()),  # type: ignore[arg-type]
        gradient_clip_val=settings.gradient_clip or None,
        logger=CSVLogger(out_dir, name="logs"),
        val_check_interval=settings.val_every_n_steps if val_loader is not None else None,
        check_val_every_n_epoch=None,
        limit_val_batches=settings.val_batches,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    last = run_dir / "last.ckpt"
    resume = last if last.exists() else None
    if resume is not None:
        log.info("resuming from %s", resume)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        try:
            trainer.fit(build_module(settings), train_loader, val_loader, ckpt_path=resume)
        except TrainingDiverged as e:
            good = last if last.exists() else None
            raise TrainingDiverged(e.step, e.what, e.terms).with_message(
                f"{e}; last good checkpoint: {good or 'none yet'} (rerunning resumes from it: "
                "lower learning_rate or set gradient_clip)"
            ) from None

    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    if val_loader is None or not best.exists():
        trainer.save_checkpoint(run_dir / "final.ckpt")
        best = run_dir / "final.ckpt"
    with atomic_file(out_dir / "best.ckpt") as tmp:
        shutil.copyfile(best, tmp)
    table = merge_metrics(out_dir / "logs", out_dir / "metrics.csv")
    plot_losses(table, out_dir / "loss.png")
    return out_dir / "best.ckpt"
