"""The LightningModule that trains a network on affinities (plus optional extra targets).

The network (an ``nn.Module`` from the registry) is separate from this module; training
and validation share one ``_step`` for the loss and its logging.

Output contract (inference relies on it): in eval mode ``module(image)`` with image
``(b, 1, z, y, x)`` returns the final logits ``(b, C, z, y, x)``; channels
``0 .. len(offsets) - 1`` are the affinities in ``offsets`` order, followed by the other
targets' channels in the configured order (see :attr:`AffinityModule.channel_names`).

Hyperparameters are saved as plain data (the keyword arguments, so a checkpoint loads with
``torch.load(weights_only=True)``); the module works with the typed settings rebuilt from
them (:class:`~pipeline_lib.config.settings.NetworkSettings`, ``OptimizerSettings``,
``ScheduleSettings``), as inference does (:mod:`pipeline_lib.inference.predictor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch

from pipeline_lib.config import build
from pipeline_lib.config.settings import NetworkSettings, OptimizerSettings, ScheduleSettings, TargetSettings
from pipeline_lib.models import create_network
from pipeline_lib.targets import target_channels
from pipeline_lib.training.losses import LossTerm, TargetHead, deep_supervision_loss, multitask_loss


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stopped being finite."""

    def __init__(self, step: int, what: str, terms: Mapping[str, float]) -> None:
        self.step, self.what, self.terms = step, what, dict(terms)
        listed = ", ".join(f"{k}={v:.4g}" for k, v in self.terms.items()) or "none"
        super().__init__(f"non-finite {what} at step {step}; loss terms: {listed}")

    def with_message(self, message: str) -> TrainingDiverged:
        """The same error with a longer message (e.g. naming the last good checkpoint)."""
        self.args = (message,)
        return self


def build_heads(
    targets: Sequence[TargetSettings], offsets: Sequence[Sequence[int]], boundary_weight: float
) -> list[TargetHead]:
    """Channel blocks in target order; ``boundary_weight`` weighs target-0 voxels of every 'bce' term."""
    heads, start = [], 0
    for target in targets:
        stop = start + target_channels(target.type, offsets)
        terms = tuple(
            LossTerm(loss.name, loss.weight, loss.pos_weight, float(boundary_weight)) for loss in target.losses
        )
        heads.append(TargetHead(target.type, start, stop, target.weight, terms))
        start = stop
    return heads


def lr_factor(schedule: ScheduleSettings, max_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier per optimizer step of the constant, cosine and step schedules."""
    warmup = schedule.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        after = step - warmup
        if schedule.name == "cosine":
            span = max(max_steps - warmup, 1)
            low = schedule.min_lr_ratio
            return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(after / span, 1.0)))
        if schedule.name == "step":
            return schedule.gamma ** (after // schedule.step_size)
        return 1.0

    return factor


class AffinityModule(L.LightningModule):
    """Predicts sigmoid channels (affinities first) from a one-channel EM image."""

    def __init__(
        self,
        architecture: str,
        architecture_params: dict[str, Any],
        offsets: Sequence[Sequence[int]],
        targets: Sequence[Mapping[str, Any]],
        learning_rate: float,
        boundary_weight: float,
        optimizer: Mapping[str, Any],
        lr_schedule: Mapping[str, Any],
        deep_supervision: Mapping[str, Any],
        max_steps: int,
        val_every_n_steps: int,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = build(NetworkSettings, self.hparams)
        self.optimizer_settings = build(OptimizerSettings, optimizer)
        self.schedule = build(ScheduleSettings, lr_schedule)
        self.learning_rate, self.max_steps, self.val_every_n_steps = float(learning_rate), max_steps, val_every_n_steps
        self.offsets = [tuple(int(v) for v in o) for o in self.network.offsets]
        self.heads = build_heads(self.network.targets, self.offsets, boundary_weight)
        self.channel_names: list[str] = []
        for head in self.heads:
            if head.name == "affinity":
                self.channel_names += [f"affinity{list(o)}" for o in self.offsets]
            else:
                self.channel_names.append(head.name)
        ds = self.network.deep_supervision
        self.ds_enabled, self.ds_weights, self.ds_clamp = ds.enabled, list(ds.weights), ds.logit_clamp
        self.net = create_network(self.network)
        self.last_terms: dict[str, float] = {}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Final logits ``(batch, channels, z, y, x)`` (never the auxiliary outputs)."""
        out = self.net(image)
        return out[0] if isinstance(out, list) else out

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self.net(batch["image"])
        if isinstance(out, list):
            outputs = [o.float() for o in out]
            loss, terms = deep_supervision_loss(
                outputs, batch["target"], batch["weight"], self.heads, self.ds_weights, self.ds_clamp
            )
        else:
            loss, terms = multitask_loss(out.float(), batch["target"], batch["weight"], self.heads)
        self.last_terms = {"loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()}}
        if stage == "train" and not torch.isfinite(loss):
            raise TrainingDiverged(self.global_step, "loss", self.last_terms)
        on_step = stage == "train"
        size = len(batch["image"])
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=size)
        if len(terms) > 1:
            for name, value in terms.items():
                self.log(f"{stage}/{name}", value, on_step=on_step, on_epoch=not on_step, batch_size=size)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def on_after_backward(self) -> None:
        """Stop on non-finite gradients (not under 16-mixed, whose scaler skips such steps itself)."""
        if self._trainer is not None and str(self.trainer.precision) == "16-mixed":
            return
        grads = [p.grad.detach().abs().max() for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(grads).max()):
            raise TrainingDiverged(self.global_step, "gradient", self.last_terms)

    def configure_optimizers(self) -> Any:  # Lightning's OptimizerLRSchedulerConfig dict
        opt, lr, decay = self.optimizer_settings, self.learning_rate, self.optimizer_settings.weight_decay
        optimizer: torch.optim.Optimizer
        if opt.name == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=decay)
        elif opt.name == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=lr, momentum=opt.momentum, weight_decay=decay)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=decay)
        schedule = self.schedule
        if schedule.name == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=schedule.gamma, patience=schedule.patience
            )
            config = {
                "scheduler": plateau,
                "interval": "step",
                "frequency": self.val_every_n_steps,
                "monitor": "val/loss",
                "strict": False,
            }
            return {"optimizer": optimizer, "lr_scheduler": config}
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
