"""Losses on small tensors with known answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline_lib.training.losses import (
    LossTerm,
    TargetHead,
    balanced_bce,
    bce,
    deep_supervision_loss,
    dice,
    downsample_nearest,
    mse,
    multitask_loss,
)


def _ones(*shape):
    return torch.ones(shape)


def test_bce_matches_torch_with_pos_weight_and_ignores_weight_zero():
    logits = torch.tensor([[[[[2.0, -1.0, 0.5, 9.0]]]]])
    target = torch.tensor([[[[[1.0, 0.0, 1.0, 0.0]]]]])
    weight = torch.tensor([[[[[1.0, 1.0, 1.0, 0.0]]]]])
    expected = F.binary_cross_entropy_with_logits(
        logits[..., :3], target[..., :3], pos_weight=torch.tensor(3.0), reduction="sum"
    )
    # Our normaliser is the summed weight (3 + 1 + 3 = 7) rather than the voxel count.
    assert bce(logits, target, weight, pos_weight=3.0).item() == pytest.approx(expected.item() / 7, rel=1e-5)


def test_balanced_bce_gives_classes_equal_total_weight():
    # One positive, three negatives, all logits 0: each class contributes log 2 · n/2.
    logits = torch.zeros(1, 1, 1, 1, 4)
    target = torch.tensor([[[[[1.0, 0.0, 0.0, 0.0]]]]])
    assert balanced_bce(logits, target, torch.ones_like(target)).item() == pytest.approx(math.log(2))
    # A wrong positive hurts as much as all negatives wrong together.
    logits_pos_wrong = torch.tensor([[[[[-3.0, -3.0, -3.0, -3.0]]]]])
    logits_neg_wrong = torch.tensor([[[[[3.0, 3.0, 3.0, 3.0]]]]])
    a = balanced_bce(logits_pos_wrong, target, torch.ones_like(target))
    b = balanced_bce(logits_neg_wrong, target, torch.ones_like(target))
    assert a.item() == pytest.approx(b.item())


def test_dice_and_mse_perfect_and_wrong():
    target = torch.tensor([[[[[1.0, 0.0, 1.0, 0.0]]]]])
    good = (target * 2 - 1) * 20
    assert dice(good, target, torch.ones_like(target)).item() < 0.01
    assert dice(-good, target, torch.ones_like(target)).item() > 0.6
    assert mse(good, target, torch.ones_like(target)).item() < 1e-6
    assert mse(-good, target, torch.ones_like(target)).item() == pytest.approx(1.0, abs=1e-6)


def test_multitask_loss_is_weighted_sum_of_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 2, 4, 4), (torch.rand(2, 3, 2, 4, 4) > 0.5).float()
    weight = torch.ones_like(target)
    heads = [
        TargetHead("affinity", 0, 2, 1.0, (LossTerm("bce", 1.0), LossTerm("dice", 0.5))),
        TargetHead("boundary", 2, 3, 2.0, (LossTerm("mse", 1.0),)),
    ]
    total, terms = multitask_loss(logits, target, weight, heads)
    assert set(terms) == {"affinity/bce", "affinity/dice", "boundary/mse"}
    expected = terms["affinity/bce"] + 0.5 * terms["affinity/dice"] + 2.0 * terms["boundary/mse"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["affinity/bce"].item() == pytest.approx(bce(logits[:, :2], target[:, :2], weight[:, :2]).item())


def test_downsample_keeps_binary_targets_binary():
    target = (torch.rand(1, 3, 8, 16, 16) > 0.5).float()
    small = downsample_nearest(target, (8, 8, 8))
    assert small.shape == (1, 3, 8, 8, 8)
    assert set(small.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(small, target[:, :, :, ::2, ::2])


def test_deep_supervision_weights_change_the_loss_as_configured():
    torch.manual_seed(1)
    target = (torch.rand(1, 2, 4, 8, 8) > 0.5).float()
    weight = torch.ones_like(target)
    outputs = [torch.randn(1, 2, 4, 8, 8), torch.randn(1, 2, 4, 4, 4) * 100, torch.randn(1, 2, 2, 2, 2)]
    heads = [TargetHead("affinity", 0, 2, 1.0, (LossTerm("bce", 1.0),))]
    only_final, _ = deep_supervision_loss(outputs, target, weight, heads, [1.0, 0.0, 0.0], 20.0)
    full, terms = deep_supervision_loss(outputs, target, weight, heads, [1.0, 0.5, 0.25], 20.0)
    plain, _ = multitask_loss(outputs[0], target, weight, heads)
    assert only_final.item() == pytest.approx(plain.item())
    expected = plain + 0.5 * terms["scale1"] + 0.25 * terms["scale2"]
    assert full.item() == pytest.approx(expected.item(), rel=1e-6)
    # Clamped logits (|x| ≤ 20) bound the auxiliary BCE per voxel by ~20.
    assert terms["scale1"].item() <= 20.0 + 1e-3
    # Two weights: the third output is ignored.
    two, _ = deep_supervision_loss(outputs, target, weight, heads, [1.0, 0.5], 20.0)
    assert two.item() == pytest.approx((plain + 0.5 * terms["scale1"]).item(), rel=1e-6)
