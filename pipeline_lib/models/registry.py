"""Network architectures by name.

``@register("name")`` adds a factory ``(in_channels, out_channels, **params) -> nn.Module``;
:func:`create_model` looks one up, and an unknown name lists the registered ones.

A factory that accepts a ``deep_supervision`` keyword supports deep supervision: its network
then returns, in training mode only, a list of logits (final full-resolution output first,
then coarser auxiliary outputs); in eval mode every network returns one tensor.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from pipeline_lib.config.settings import NetworkSettings
from pipeline_lib.errors import ConfigError
from pipeline_lib.targets import target_channels

Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"architecture '{name}' is registered twice")
        _REGISTRY[name] = factory
        return factory

    return add


def available() -> list[str]:
    return sorted(_REGISTRY)


def supports_deep_supervision(name: str) -> bool:
    return "deep_supervision" in inspect.signature(_REGISTRY[name]).parameters


def create_model(
    name: str, in_channels: int, out_channels: int, params: dict[str, Any], deep_supervision: bool = False
) -> nn.Module:
    """Instantiate architecture ``name``; bad names or parameters are a :class:`ConfigError`."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown architecture '{name}'{hint}; available: {', '.join(available())}")
    if "deep_supervision" in params:
        raise ConfigError(f"architecture '{name}': use the model key deep_supervision.enabled, not architecture_params")
    extra: dict[str, Any] = {}
    if deep_supervision:
        if not supports_deep_supervision(name):
            able = ", ".join(n for n in available() if supports_deep_supervision(n))
            raise ConfigError(f"architecture '{name}' does not support deep supervision; these do: {able}")
        extra["deep_supervision"] = True
    try:
        return _REGISTRY[name](in_channels=in_channels, out_channels=out_channels, **params, **extra)
    except TypeError as e:
        raise ConfigError(f"architecture '{name}': bad architecture_params {params}: {e}") from None


def create_network(network: NetworkSettings) -> nn.Module:
    """The network of a model entry: one input channel, one output channel per target channel
    (every affinity offset for ``affinity``, one for other targets), in target order, with
    deep-supervision outputs when ``network.deep_supervision.enabled``.

    Training (:class:`~pipeline_lib.training.module.AffinityModule`) and inference
    (:func:`~pipeline_lib.inference.predictor.load_model`) both build it here, so a
    checkpoint's weights always fit.
    """
    channels = sum(target_channels(t.type, network.offsets) for t in network.targets)
    return create_model(
        network.architecture,
        1,
        channels,
        dict(network.architecture_params),
        network.deep_supervision.enabled,
    )
