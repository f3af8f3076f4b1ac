"""MONAI networks registered under short names, with defaults sized for EM patches."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks import nets
from torch import nn

from pipeline_lib.models.registry import register


@register("unet")
def unet(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int | Sequence[int]] = (2, 2, 2),
    num_res_units: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ``UNet`` (residual units); strides may be anisotropic, e.g. ``[1, 2, 2]``."""
    return nets.UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(tuple(s) if isinstance(s, Sequence) else s for s in strides),
        num_res_units=num_res_units,
        dropout=dropout,
    )


@register("basic_unet")
def basic_unet(
    in_channels: int,
    out_channels: int,
    features: Sequence[int] = (16, 16, 32, 64, 128, 16),
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ``BasicUNet`` (four isotropic 2× poolings: patches must be multiples of 16)."""
    return nets.BasicUNet(
        spatial_dims=3, in_channels=in_channels, out_channels=out_channels, features=tuple(features), dropout=dropout
    )
