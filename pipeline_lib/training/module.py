"""The LightningModule that trains a network on affinities.

The network (an ``nn.Module`` from the registry) is separate from this module; training
and validation share one ``_step`` for the loss and its logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from pipeline_lib.models import create_model


def masked_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, boundary_weight: float) -> torch.Tensor:
    """Binary cross-entropy averaged over valid edges; edges with target 0 weigh ``boundary_weight``."""
    weight = weight * torch.where(target < 0.5, boundary_weight, 1.0)
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    return loss / weight.sum().clamp_min(1.0)


class AffinityModule(L.LightningModule):
    """Predicts one sigmoid channel per affinity offset from a one-channel EM image."""

    def __init__(
        self,
        architecture: str,
        architecture_params: dict[str, Any],
        offsets: Sequence[Sequence[int]],
        learning_rate: float,
        boundary_weight: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.offsets = [tuple(int(v) for v in o) for o in offsets]
        self.learning_rate = learning_rate
        self.boundary_weight = boundary_weight
        self.net = create_model(architecture, 1, len(self.offsets), dict(architecture_params))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, len(offsets), z, y, x)``."""
        out: torch.Tensor = self.net(image)
        return out

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = masked_bce(logits.float(), batch["target"], batch["weight"], self.boundary_weight)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=len(logits))
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
