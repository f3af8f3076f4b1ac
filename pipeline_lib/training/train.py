"""Train a model with Lightning, resumable from its last checkpoint.

Output folder of a model::

    out_dir/best.ckpt        the checkpoint downstream stages use (best validation loss,
                             the final weights included, or the final one when there is
                             no validation data)
    out_dir/metrics.csv      every logged value, each step once (resumed runs merged)
    out_dir/loss.png         training and validation loss curves
    out_dir/checkpoints/<settings hash>/last.ckpt   resume state (not a stage output)
    out_dir/checkpoints/<settings hash>/logs/       the logger's versions, one per (resumed) run

Training validates every ``val_every_n_steps`` steps and once more at its end (``max_steps``
or ``max_minutes``), and writes ``last.ckpt`` every ``resume_every_n_steps`` steps, after
each validation and at the end. Rerunning after the job was killed resumes from ``last.ckpt``
of the same settings (same hash) with weights, optimizer, scheduler, step, random state and the
position in the patch stream restored: on the CPU it ends with the same weights as an
uninterrupted run. Changed settings start afresh in a new folder. A non-finite loss or gradient
stops training with a :class:`TrainingDiverged` naming the step, the loss terms and the last
good checkpoint; a SIGTERM (a cancelled job) with a :class:`TrainingInterrupted`, so the job
exits non-zero. The job uses ``threads`` threads (:mod:`pipeline_lib.threads`).
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
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import ClusterEnvironment, LightningEnvironment
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pipeline_lib.config import ModelSettings
from pipeline_lib.devices import auto_workers, available_cpus, configure_float32_math
from pipeline_lib.errors import ConfigError
from pipeline_lib.io.volumes import atomic_file
from pipeline_lib.provenance import plain_data
from pipeline_lib.threads import limit_threads
from pipeline_lib.training.batch_augment import BatchAugment, BatchAugmentCallback, batched_augmentation, worker_augment
from pipeline_lib.training.callbacks import ResumeState, StopAtMaxSteps, merge_metrics, resume_step
from pipeline_lib.training.data import PatchDataModule, PatchSpec
from pipeline_lib.training.module import AffinityModule, TrainingDiverged
from pipeline_lib.training.plots import plot_losses

log = logging.getLogger(__name__)


# Settings that change when and how often state is saved, not the trained weights.
NOT_HASHED = ("resume_every_n_steps",)


class TrainingInterrupted(RuntimeError):
    """Training was stopped by a signal (SIGTERM) before it finished."""


def settings_hash(settings: ModelSettings, train_stores: Sequence[Path], val_stores: Sequence[Path]) -> str:
    """The name of a run's folder: settings that shape the weights and the data they see."""
    hashed = {k: v for k, v in plain_data(settings).items() if k not in NOT_HASHED}
    record = {
        "settings": hashed,
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
    """The loader's view of a model: parameters of targets it does not have keep PatchSpec's
    defaults (they are never used)."""
    params: dict[str, Any] = {}
    for target in settings.targets:
        if target.type == "distance":
            params["distance_scale"] = target.distance_scale
        elif target.type == "lsd":
            params.update(lsd_sigma=target.lsd_sigma, lsd_downsample=target.lsd_downsample)
    return PatchSpec(
        settings.patch_shape,
        settings.offsets,
        tuple(t.type for t in settings.targets),
        ignore_zero=settings.label_zero == "ignore",
        **params,
    )


def check_validation(settings: ModelSettings, val_stores: Sequence[Path]) -> None:
    """Errors, before any training, for settings that need validation data when there is none."""
    if val_stores:
        return
    if settings.require_validation:
        raise ConfigError("model key 'require_validation' is true but no selected dataset has role 'val'")
    if settings.lr_schedule.name == "plateau":
        raise ConfigError("model key 'lr_schedule.name': 'plateau' needs a dataset with role 'val'")


def main_threads(threads: int, num_workers: int) -> int:
    """Threads of the training process when ``num_workers`` loader workers take one each."""
    return max(1, threads - num_workers)


def train_model(
    settings: ModelSettings,
    train_stores: Sequence[str | Path],
    val_stores: Sequence[str | Path],
    out_dir: str | Path,
    threads: int = 1,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train (or resume) and write ``best.ckpt``, ``metrics.csv`` and ``loss.png`` in ``out_dir``.

    ``threads`` is the job's CPU budget: each of the ``num_workers`` DataLoader workers
    computes on one thread and the training process on the rest (at least one).
    ``callbacks`` are extra Lightning callbacks (tests use them to observe or interrupt a run).
    """
    out_dir = Path(out_dir)
    train_paths, val_paths = [Path(s) for s in train_stores], [Path(s) for s in val_stores]
    check_validation(settings, val_paths)
    run_dir = out_dir / "checkpoints" / settings_hash(settings, train_paths, val_paths)
    run_dir.mkdir(parents=True, exist_ok=True)
    workers = settings.num_workers
    if workers == "auto":  # the job's CPUs (its threads) for the loader of its one device
        cpus = min(threads, available_cpus())
        workers = auto_workers(torch.cuda.is_available(), cpus)
    limit_threads(main_threads(threads, workers))
    configure_float32_math()
    L.seed_everything(settings.seed, workers=True, verbose=False)

    spec = patch_spec(settings)
    batched = batched_augmentation(settings)  # then the workers only crop; see training/batch_augment.py
    augment = worker_augment(settings.augment) if batched else settings.augment
    data = PatchDataModule(
        train_paths, val_paths, spec, settings, augment, workers, raw=batched, pin_memory=torch.cuda.is_available()
    )
    data.setup("fit")  # bad volumes fail here, before the trainer starts
    if batched:
        kinds = [t.type for t in settings.targets]
        augmenter = BatchAugment(
            settings.augment, kinds, settings.offsets, settings.seed, settings.label_zero == "ignore"
        )
        callbacks = [BatchAugmentCallback(augmenter), *callbacks]
    if not data.has_validation:
        log.info("no dataset with role 'val': training without validation; best.ckpt is the final checkpoint")

    last = run_dir / "last.ckpt"
    best_checkpoint = ModelCheckpoint(dirpath=run_dir, filename="best", monitor="val/loss", save_top_k=1)
    resume_state = ResumeState(last, settings.resume_every_n_steps, data.has_validation, settings.val_every_n_steps)
    saving = [best_checkpoint, resume_state] if data.has_validation else [resume_state]
    trainer = L.Trainer(
        devices=1,  # one device per job: the patch stream and augmentation seeds are not split by rank
        max_steps=settings.max_steps,
        max_time=datetime.timedelta(minutes=settings.max_minutes) if settings.max_minutes else None,
        precision=settings.precision,
        callbacks=[
            StopAtMaxSteps(settings.max_steps),
            LearningRateMonitor(logging_interval="step"),
            *callbacks,
            *saving,
        ],
        plugins=list(cluster_environment()),  # type: ignore[arg-type]
        gradient_clip_val=settings.gradient_clip or None,
        logger=CSVLogger(run_dir, name="logs"),
        val_check_interval=settings.val_every_n_steps if data.has_validation else None,
        check_val_every_n_epoch=None,
        limit_val_batches=settings.val_batches,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    resume = last if last.exists() else None
    if resume is not None:
        data.start_at(resume_step(resume))
        log.info("resuming from %s (step %d)", resume, data.start_batch)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")  # no val data
        try:
            trainer.fit(build_module(settings), datamodule=data, ckpt_path=resume)
        except TrainingDiverged as e:
            good = last if last.exists() else None
            raise TrainingDiverged(e.step, e.what, e.terms).with_message(
                f"{e}; last good checkpoint: {good or 'none yet'} (rerunning resumes from it: "
                "lower learning_rate or set gradient_clip)"
            ) from None
        except SIGTERMException:
            # Lightning ends a SIGTERMed fit with SystemExit(None), i.e. exit status 0.
            raise TrainingInterrupted(
                f"training stopped by SIGTERM at step {trainer.global_step} of {settings.max_steps}; "
                f"rerunning resumes from {last if last.exists() else 'the start'}"
            ) from None

    best = Path(best_checkpoint.best_model_path) if data.has_validation and best_checkpoint.best_model_path else last
    with atomic_file(out_dir / "best.ckpt") as tmp:
        shutil.copyfile(best, tmp)
    table = merge_metrics(run_dir / "logs", out_dir / "metrics.csv")
    plot_losses(table, out_dir / "loss.png")
    return out_dir / "best.ckpt"
