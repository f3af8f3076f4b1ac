"""Losses for multi-task targets, with optional deep supervision.

Every output channel is a logit whose sigmoid lies in [0, 1], and every target channel is in
[0, 1]; ``weight`` (same shape as the target) is 0 where a voxel must not count (mask,
affinity edges leaving the patch). Each loss is a weighted mean over the valid voxels of the
channels it is given, so terms of targets with different sizes are comparable.

A model's loss is ``Σ_targets target.weight · Σ_losses loss.weight · loss``; with deep
supervision, ``Σ_i ds_weight[i] · that`` over the outputs (finest first), targets brought
to each output's shape by nearest-neighbour sampling (binary targets stay binary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_NAMES = ("bce", "balanced_bce", "dice", "mse")


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def bce(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, pos_weight: float = 1.0, neg_weight: float = 1.0
) -> torch.Tensor:
    """BCE with logits; voxels with target ≥ 0.5 weigh ``pos_weight``, the others ``neg_weight``."""
    class_weight = torch.where(target >= 0.5, pos_weight, neg_weight)
    values = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _weighted_mean(values, weight * class_weight)


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE where, per channel, positives and negatives carry equal total weight (over the batch)."""
    dims = [0, *range(2, target.ndim)]
    positive = (target >= 0.5).to(weight.dtype)
    n_pos = (weight * positive).sum(dim=dims, keepdim=True)
    n_all = weight.sum(dim=dims, keepdim=True)
    n_neg = n_all - n_pos
    w_pos = n_all / (2 * n_pos.clamp_min(1.0))
    w_neg = n_all / (2 * n_neg.clamp_min(1.0))
    class_weight = torch.where(positive > 0, w_pos, w_neg)
    values = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _weighted_mean(values, weight * class_weight)


def dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 − 2Σpt / (Σp + Σt)`` per channel (valid voxels only), averaged over channels."""
    dims = [0, *range(2, target.ndim)]
    prob = torch.sigmoid(logits) * weight
    t = target * weight
    overlap = (prob * t).sum(dim=dims)
    total = prob.sum(dim=dims) + t.sum(dim=dims)
    return (1 - (2 * overlap + eps) / (total + eps)).mean()


def mse(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``sigmoid(logits)`` and the target."""
    return _weighted_mean((torch.sigmoid(logits) - target) ** 2, weight)


@dataclass(frozen=True)
class LossTerm:
    """One loss on one target: ``weight · name(logits[:, channels], ...)``."""

    name: str
    weight: float
    pos_weight: float = 1.0
    neg_weight: float = 1.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.name == "bce":
            return bce(logits, target, weight, self.pos_weight, self.neg_weight)
        if self.name == "balanced_bce":
            return balanced_bce(logits, target, weight)
        if self.name == "dice":
            return dice(logits, target, weight)
        if self.name == "mse":
            return mse(logits, target, weight)
        raise ValueError(f"unknown loss '{self.name}'; available: {', '.join(LOSS_NAMES)}")


@dataclass(frozen=True)
class TargetHead:
    """A target's block of channels ``[start, stop)`` with its weight and loss terms."""

    name: str
    start: int
    stop: int
    weight: float
    terms: tuple[LossTerm, ...]


def multitask_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, heads: Sequence[TargetHead]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum over targets and their terms, and each term (``"<target>/<loss>"``) unweighted."""
    total = logits.new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    for head in heads:
        channels = slice(head.start, head.stop)
        for term in head.terms:
            value = term(logits[:, channels], target[:, channels], weight[:, channels])
            terms[f"{head.name}/{term.name}"] = value.detach()
            total = total + head.weight * term.weight * value
    return total, terms


def downsample_nearest(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(b, c, z, y, x)`` brought to spatial ``shape`` by nearest-neighbour sampling (no new values)."""
    if tuple(tensor.shape[2:]) == tuple(shape):
        return tensor
    return F.interpolate(tensor, size=tuple(shape), mode="nearest")


def deep_supervision_loss(
    outputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor,
    heads: Sequence[TargetHead],
    scale_weights: Sequence[float],
    logit_clamp: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_i scale_weights[i] · multitask_loss(outputs[i])``; outputs beyond the weights are ignored.

    ``outputs[0]`` is the full-resolution output; the others (coarser) have their logits
    clamped to ``[-logit_clamp, logit_clamp]``. Terms are those of the full-resolution output
    plus ``"scale<i>"`` per auxiliary output.
    """
    total = outputs[0].new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    for i, (logits, factor) in enumerate(zip(outputs, scale_weights, strict=False)):
        if i > 0:
            logits = logits.clamp(-logit_clamp, logit_clamp)
        shape = logits.shape[2:]
        loss, scale_terms = multitask_loss(
            logits, downsample_nearest(target, shape), downsample_nearest(weight, shape), heads
        )
        if i == 0:
            terms.update(scale_terms)
        else:
            terms[f"scale{i}"] = loss.detach()
        total = total + factor * loss
    return total, terms
