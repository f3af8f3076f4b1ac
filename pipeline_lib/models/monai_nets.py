"""MONAI networks registered under short names, with defaults sized for EM patches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        strides=tuple(tuple(s) if isinstance(s, Sequence) else s for s in strides),  # type: ignore[misc]
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


@register("segresnet")
def segresnet(
    in_channels: int,
    out_channels: int,
    init_filters: int = 8,
    blocks_down: Sequence[int] = (1, 2, 2, 4),
    blocks_up: Sequence[int] = (1, 1, 1),
    dropout: float | None = None,
) -> nn.Module:
    """MONAI ``SegResNet`` (isotropic 2× downsampling ``len(blocks_down) - 1`` times)."""
    return nets.SegResNet(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        blocks_down=tuple(blocks_down),
        blocks_up=tuple(blocks_up),
        dropout_prob=dropout,
    )


@register("segresnet_ds")
def segresnet_ds(
    in_channels: int,
    out_channels: int,
    init_filters: int = 8,
    blocks_down: Sequence[int] = (1, 2, 2, 4),
    norm: str = "instance",
    deep_supervision: bool = False,
) -> nn.Module:
    """MONAI ``SegResNetDS``; with ``deep_supervision`` it returns a list (final first) in training mode."""
    return nets.SegResNetDS(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        blocks_down=tuple(blocks_down),
        norm=norm,
        dsdepth=len(blocks_down) if deep_supervision else 1,
    )


@register("swin_unetr")
def swin_unetr(
    in_channels: int,
    out_channels: int,
    feature_size: int = 24,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int = 7,
    norm_name: str | Sequence[Any] = "instance",
) -> nn.Module:
    """MONAI ``SwinUNETR`` (patches must be multiples of 32 per axis; feature_size a multiple of 12)."""
    return nets.SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        window_size=window_size,
        norm_name=norm_name if isinstance(norm_name, str) else tuple(norm_name),
        spatial_dims=3,
    )
