"""Residual symmetric U-Net for anisotropic EM (Lee et al. 2017, "Superhuman accuracy on SNEMI3D").

Each level is a residual block: a 2D ``(1, 3, 3)`` convolution followed by a residual unit of
two 3D ``(3, 3, 3)`` convolutions. Levels are joined by max-pooling with per-level factors
(``(1, 2, 2)`` in the early levels keeps thin sections intact), and the decoder mirrors the
encoder with transposed convolutions and *additive* skip connections (symmetric widths).

Contract: input ``(b, in_channels, z, y, x)`` with each spatial size divisible by the product
of the downsampling factors along that axis; output logits ``(b, out_channels, z, y, x)``. With
``deep_supervision=True`` and the module in training mode, the output is a list: the final
logits first, then one auxiliary output per coarser level (finest to coarsest). In eval mode
it is always the single final tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pipeline_lib.models.registry import register


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    raise ValueError(f"unknown norm '{kind}'; available: batch, group, instance")


class _ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], norm: str) -> None:
        padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
        super().__init__(nn.Conv3d(cin, cout, kernel, padding=padding, bias=False), _norm(norm, cout), nn.ELU())


class ResBlock(nn.Module):
    """2D ``(1,3,3)`` conv, then ``x + conv3d(conv3d(x))``."""

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__()
        self.pre = _ConvNormAct(cin, cout, (1, 3, 3), norm)
        self.res = nn.Sequential(
            _ConvNormAct(cout, cout, (3, 3, 3), norm),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            _norm(norm, cout),
        )
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        out: torch.Tensor = self.act(x + self.res(x))
        return out


class RSUNet(nn.Module):
    """See the module docstring; ``len(downsample) == len(widths) - 1``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int],
        downsample: Sequence[Sequence[int]],
        norm: str,
        deep_supervision: bool,
    ) -> None:
        super().__init__()
        if len(downsample) != len(widths) - 1:
            raise TypeError(f"rsunet needs len(downsample) == len(widths) - 1, got {len(downsample)} and {len(widths)}")
        self.factors: list[tuple[int, int, int]] = [(int(d[0]), int(d[1]), int(d[2])) for d in downsample]
        self.deep_supervision = deep_supervision
        self.embed = _ConvNormAct(in_channels, widths[0], (1, 5, 5), norm)
        self.down = nn.ModuleList(ResBlock(widths[i - 1] if i else widths[0], w, norm) for i, w in enumerate(widths))
        self.pool = nn.ModuleList(nn.MaxPool3d(f, f) for f in self.factors)
        self.upconv = nn.ModuleList(
            nn.ConvTranspose3d(widths[i + 1], widths[i], f, stride=f) for i, f in enumerate(self.factors)
        )
        self.up = nn.ModuleList(ResBlock(widths[i], widths[i], norm) for i in range(len(self.factors)))
        self.head = nn.Conv3d(widths[0], out_channels, 1)
        self.aux = nn.ModuleList(nn.Conv3d(w, out_channels, 1) for w in widths[1:]) if deep_supervision else None

    def shape_factor(self) -> tuple[int, int, int]:
        """Each spatial input size must be a multiple of this."""
        z, y, x = (math.prod(f[a] for f in self.factors) for a in range(3))
        return (z, y, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        factor = self.shape_factor()
        if any(s % f for s, f in zip(x.shape[2:], factor, strict=True)):
            raise ValueError(f"rsunet input {tuple(x.shape[2:])} must be divisible by {factor} per axis")
        x = self.embed(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.pool):
                skips.append(x)
                x = self.pool[i](x)
        coarse = [x]
        for i in reversed(range(len(self.up))):
            x = self.up[i](self.upconv[i](x) + skips[i])
            if i > 0:
                coarse.append(x)
        final: torch.Tensor = self.head(x)
        if not (self.training and self.aux is not None):
            return final
        # coarse holds levels coarsest→finer (without level 0); aux[i] serves level i + 1.
        aux = [self.aux[len(coarse) - 1 - j](c) for j, c in enumerate(coarse)]
        return [final, *reversed(aux)]


@register("rsunet")
def rsunet(
    in_channels: int,
    out_channels: int,
    widths: Sequence[int] = (16, 32, 64, 128),
    downsample: Sequence[Sequence[int]] = ((1, 2, 2), (1, 2, 2), (2, 2, 2)),
    norm: str = "group",
    deep_supervision: bool = False,
) -> nn.Module:
    """Residual symmetric U-Net; ``downsample`` gives the pooling factor (z, y, x) below each level."""
    return RSUNet(in_channels, out_channels, widths, downsample, norm, deep_supervision)
