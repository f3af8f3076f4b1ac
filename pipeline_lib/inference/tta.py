"""Test-time augmentation (flips over z, y, x and the y–x transpose) exact for affinities.

A *variant* flips some spatial axes of a window and then optionally swaps y and x. The
variants of a run are all combinations of the configured flips and transpose (the identity
always among them): ``flip: [z, y, x]`` with ``transpose: true`` gives 2³·2 = 16.

Inverting a variant on an affinity output (channel ``k`` has offset ``o_k``, the value at
``v`` describes the edge ``(v, v + o_k)``; see ``DESIGN.md``):

1. **un-transpose**: swap the y and x axes of the output; the channel the model computed
   for offset ``(dz, dy, dx)`` now describes offset ``(dz, dx, dy)``, so original channel
   ``j`` is taken from the channel whose offset is the y–x swap of ``o_j``. The offset list
   must contain that partner (e.g. ``(0, -3, 0)`` needs ``(0, 0, -3)``), else
   :class:`~pipeline_lib.errors.ConfigError`.
2. **un-flip**: flip the output back. A channel whose offset has no component along a flipped
   axis is done. One whose nonzero components all lie along flipped axes now describes, at
   ``v``, the edge to the *other* neighbour ``(v, v − o)``; the edge ``(u, u + o)`` sits at
   ``v = u + o``, so the channel is shifted: ``out[u] = flipped[u + o]``. An offset with
   some but not all nonzero components flipped (a diagonal) would become an edge direction
   not in the list, and is rejected.

**Voxels without a value.** The shift leaves the ``|o|``-voxel slab at the low end of each
shifted axis of the window without a value (there ``u + o`` lies outside the window —
exactly where the un-augmented affinity is undefined too, its partner being outside the
window). Those voxels are *excluded* from the combination: ``mean``, ``min`` and ``max`` are
taken over the variants that have a value there. The identity variant has a value
everywhere, so no voxel is left empty (this is the fall-back to the un-augmented pass).
For a model that computes the true affinities of its input (the oracle of the tests),
every variant therefore equals the un-augmented output wherever it has a value, and the
combined output equals the un-augmented output exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from pipeline_lib.errors import ConfigError

AXIS_NAMES = ("z", "y", "x")
Combine = Literal["mean", "min", "max"]
Offsets = Sequence[Sequence[int]]


@dataclass(frozen=True)
class Variant:
    """Flip the spatial ``flips`` (0 = z, 1 = y, 2 = x), then swap y and x if ``transpose``."""

    flips: tuple[int, ...] = ()
    transpose: bool = False

    @property
    def name(self) -> str:
        parts = (["flip_" + "".join(AXIS_NAMES[a] for a in self.flips)] if self.flips else []) + (
            ["transpose"] if self.transpose else []
        )
        return "+".join(parts) or "identity"

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``(B, C, z, y, x)`` of input windows."""
        if self.flips:
            windows = torch.flip(windows, [2 + a for a in self.flips])
        if self.transpose:
            windows = windows.transpose(3, 4)
        return windows


def variants(flip: Sequence[str], transpose: bool) -> list[Variant]:
    """All combinations of flipping each axis in ``flip`` (names z, y, x) and transposing.

    The identity comes first; there are ``2 ** (len(flip) + transpose)`` variants.
    """
    axes = sorted({AXIS_NAMES.index(a) for a in flip})
    result = []
    for t in [False, True] if transpose else [False]:
        for n in range(len(axes) + 1):
            for subset in itertools.combinations(axes, n):
                result.append(Variant(tuple(subset), t))
    return result


def _swap_yx(offset: Sequence[int]) -> tuple[int, int, int]:
    return (int(offset[0]), int(offset[2]), int(offset[1]))


@dataclass(frozen=True)
class _ChannelPlan:
    source: int  # channel of the un-transposed model output
    shift: tuple[int, int, int] | None  # offset to shift by after un-flipping, if any


def inverse_plan(variant: Variant, offsets: Offsets) -> list[_ChannelPlan]:
    """How each output channel is recovered from the augmented output; rejects bad offsets."""
    index = {tuple(int(v) for v in o): k for k, o in enumerate(offsets)}
    plan = []
    for o in offsets:
        offset = (int(o[0]), int(o[1]), int(o[2]))
        source = index[offset]
        if variant.transpose:
            partner = _swap_yx(offset)
            if partner not in index:
                raise ConfigError(
                    f"config key 'predict.tta.transpose': offset {list(offset)} has no y–x partner "
                    f"{list(partner)} among the model's offsets; add it or disable the transpose"
                )
            source = index[partner]
        nonzero = {a for a in range(3) if offset[a] != 0}
        flipped = nonzero & set(variant.flips)
        if flipped and flipped != nonzero:
            raise ConfigError(
                f"config key 'predict.tta.flip': diagonal offset {list(offset)} cannot be flipped along "
                f"{AXIS_NAMES[min(flipped)]} alone (it would become an edge direction the model lacks); "
                "remove that axis from the flips"
            )
        plan.append(_ChannelPlan(source, offset if flipped else None))
    return plan


def _shift(channel: torch.Tensor, offset: Sequence[int]) -> torch.Tensor:
    """``out[u] = channel[u + offset]`` over the last three axes; NaN where ``u + offset`` is outside."""
    out = torch.full_like(channel, float("nan"))
    dst = [slice(None)] * (channel.ndim - 3)
    src = list(dst)
    for o, n in zip(offset, channel.shape[-3:], strict=True):
        dst.append(slice(-o, None))
        src.append(slice(0, n + o))
    out[tuple(dst)] = channel[tuple(src)]
    return out


def invert(output: torch.Tensor, variant: Variant, plan: Sequence[_ChannelPlan]) -> torch.Tensor:
    """The affinities ``(B, C, z, y, x)`` in the original geometry; NaN marks voxels without a value."""
    if variant.transpose:
        output = output.transpose(3, 4)
    if variant.flips:
        output = torch.flip(output, [2 + a for a in variant.flips])
    if variant.transpose:
        output = output[:, [p.source for p in plan]]
    if not any(p.shift for p in plan):
        return output
    channels = [_shift(output[:, k], p.shift) if p.shift else output[:, k] for k, p in enumerate(plan)]
    return torch.stack(channels, dim=1)


class Combiner:
    """Running mean, min or max over variants, skipping NaN (no value) entries."""

    def __init__(self, how: Combine) -> None:
        if how not in ("mean", "min", "max"):
            raise ConfigError(f"config key 'predict.tta.combine': unknown combination '{how}'")
        self.how = how
        self.value: torch.Tensor | None = None
        self.count: torch.Tensor | int = 0

    def add(self, values: torch.Tensor, complete: bool = False) -> None:
        """Add one variant; ``complete`` promises that it has no NaN (skips the bookkeeping)."""
        if self.how == "mean":
            if not complete:
                self.count = self.count + (~torch.isnan(values)).to(values.dtype)
                values = torch.nan_to_num(values, nan=0.0)
            else:
                self.count = self.count + 1
            self.value = values.clone() if self.value is None else self.value.add_(values)
        elif self.value is None:
            self.value = values.clone()
        else:  # fmin/fmax ignore a NaN operand
            self.value = torch.fmin(self.value, values) if self.how == "min" else torch.fmax(self.value, values)

    def result(self) -> torch.Tensor:
        """The combination; a voxel no variant had a value for is NaN (never with the identity)."""
        if self.value is None:
            raise ValueError("no variant was added")
        if self.how != "mean":
            return self.value
        return self.value / self.count  # 0 / 0 is NaN where no variant had a value
