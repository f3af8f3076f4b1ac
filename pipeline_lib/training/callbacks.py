"""Lightning callbacks that make a training run end cleanly and resume exactly.

- :class:`StopAtMaxSteps` stops the run on its last step through ``trainer.should_stop``, so
  Lightning validates once more before it ends (it validates whenever a run is asked to stop,
  which is also how the ``max_time`` budget ends a run): the final weights are always validated
  and, when best, become ``best.ckpt``.
- :class:`ResumeState` writes the resume checkpoint (``last.ckpt``, atomically) every
  ``every_n_steps`` and every ``val_every_n_steps`` steps (after the validation, when there is
  one) and when training stops. Into every
  checkpoint it puts the random state of the main process (Python, NumPy, PyTorch, CUDA) and,
  when the run resumes, it restores that state; with the patch stream started at the
  checkpoint's step (:func:`resume_step`, :class:`~pipeline_lib.training.data.RandomPatches`)
  a killed and resumed run trains on the same batches with the same random numbers as an
  uninterrupted one. It also flushes the loggers with each checkpoint and
  records in each logger version the step it starts from, so :func:`merge_metrics` keeps each
  step once.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from pipeline_lib.io.volumes import atomic_file

FIRST_STEP_FILE = "first_step.txt"


class StopAtMaxSteps(Callback):
    """Asks the trainer to stop after step ``max_steps`` (so the final weights are validated)."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True


def random_state() -> dict[str, Any]:
    """The random generators of this process, in types a ``weights_only`` load accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = [name, np.asarray(keys).tolist(), int(position), int(has_gauss), float(gauss)]
    state: dict[str, Any] = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what :func:`random_state` returned."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_step(checkpoint: Path) -> int:
    """The optimizer steps (= batches, one batch per step) a checkpoint has trained."""
    return int(torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)["global_step"])


class ResumeState(Checkpoint):
    """Writes ``path`` (the resume checkpoint) and restores the run's random state from it.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning calls it after the other
    callbacks (list it after the best-model ``ModelCheckpoint``: the checkpoint it writes then
    holds that callback's updated state). ``validates`` says whether validation runs every
    ``val_every_n_steps`` steps (validation writes the resume state itself).
    """

    def __init__(self, path: Path, every_n_steps: int, validates: bool, val_every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.validates = validates
        self.val_every_n_steps = val_every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        at_validation_step = step % self.val_every_n_steps == 0 or trainer.should_stop
        if self.validates and at_validation_step:
            return  # validation follows and writes the resume state
        if at_validation_step or step % self.every_n_steps == 0:
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()  # every row up to this step is on disk before the state that follows it
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["random_state"] = random_state()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if "random_state" in checkpoint:
            set_random_state(checkpoint["random_state"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if logger.log_dir is not None:
                Path(logger.log_dir).mkdir(parents=True, exist_ok=True)
                (Path(logger.log_dir) / FIRST_STEP_FILE).write_text(f"{trainer.global_step}\n")


def merge_metrics(log_dir: Path, output: Path) -> pd.DataFrame:
    """All ``version_*/metrics.csv`` of one run and its resumptions as one table, each step once.

    A version that started from step ``s`` (its ``first_step.txt``) redid every step from ``s``
    on, so the rows of earlier versions at logged steps ``>= s`` are dropped (a validation after
    step ``s`` is logged at step ``s - 1`` and stays).
    """
    paths = sorted(log_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    frames: list[pd.DataFrame] = []
    for path in paths:
        first = path.parent / FIRST_STEP_FILE
        start = int(first.read_text()) if first.exists() else 0
        frames = [frame[frame["step"] < start] for frame in frames]
        frames.append(pd.read_csv(path))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": []})
    with atomic_file(output) as tmp:
        table.to_csv(tmp, index=False)
    return table
