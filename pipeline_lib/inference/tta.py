"""Test-time augmentation (flips over z, y, x and the y–x transpose) exact for affinities.

A *variant* flips some spatial axes of a window and then optionally swaps y and x. The
variants of a run are all combinations of the configured flips and transpose (the identity
always among them): ``flip: [z, y, x]`` with ``transpose: true`` gives 2³·2 = 16.

Inverting a variant on an affinity output (channel ``k`` has offset ``o_k``, the value at
``v`` describes the edge ``(v, v + o_k)``; see docs/conventions.md):

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

from collections.abc import Sequence

import torch

from pipeline_lib.errors import ConfigError
from pipeline_lib.offsets import ChannelPlan, Combine, Variant


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


def invert(output: torch.Tensor, variant: Variant, plan: Sequence[ChannelPlan]) -> torch.Tensor:
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


__all__ = ["Combiner", "invert"]
