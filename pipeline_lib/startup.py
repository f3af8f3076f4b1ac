"""Checks run once at workflow start, from the settings and the sources' headers only.

:func:`check_run` is what :meth:`pipeline_lib.workflow.Plan.from_config` calls after the
schema validation; everything here reads file headers, never voxel data, and builds
networks on PyTorch's ``meta`` device (no weights allocated). Each mistake raises a
:class:`~pipeline_lib.errors.UserError` naming the key, dataset or file:

- every source of a dataset opens (format, file, key), image/labels/mask shapes agree,
  labels are integers (:func:`dataset_header`);
- ``roi`` is non-empty and inside the volume;
- every model's architecture exists, takes its ``architecture_params``, and runs a patch of
  ``patch_shape``; the patch fits in every train and val volume (:func:`check_models`).

Value-dependent checks (negative or all-zero labels, non-finite image values) need the
voxels and run in the assemble job (:mod:`pipeline_lib.data.assemble`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import pipeline_lib
from pipeline_lib.config import DatasetSpec, ModelSettings, Settings
from pipeline_lib.errors import ConfigError, UserError
from pipeline_lib.io.sources import open_source
from pipeline_lib.provenance import git_commit, plain_data

Shape3 = tuple[int, int, int]


def describe_source(source: Mapping[str, Any]) -> str:
    """How messages name a source: its file (or glob), with the HDF5 key or zarr array."""
    where = str(source.get("path") or source.get("glob"))
    inner = source.get("key") or source.get("array")
    return f"{where} ({'key' if 'key' in source else 'array'} '{inner}')" if inner else where


@dataclass(frozen=True)
class DatasetHeader:
    """What the headers say about a dataset: the sources' shape and dtypes, the assembled shape."""

    source_shape: Shape3
    dtypes: dict[str, np.dtype[Any]]
    shape: Shape3


def _source_headers(spec: DatasetSpec) -> dict[str, tuple[Shape3, np.dtype[Any]]]:
    if spec.synthetic is not None:
        s = spec.synthetic.shape
        return {"image": (s, np.dtype(np.float32)), "labels": (s, np.dtype(np.uint32))}
    headers = {}
    for role in ("image", "labels", "mask"):
        source = getattr(spec, role)
        if source is not None:
            try:
                opened = open_source(source, Path("/"), is_label=role == "labels")
            except UserError as e:
                raise type(e)(f"dataset '{spec.name}' {role}: {e}") from None
            headers[role] = (tuple(opened.shape), np.dtype(opened.dtype))
    return headers  # type: ignore[return-value]


def dataset_header(spec: DatasetSpec) -> DatasetHeader:
    """Open the dataset's sources (headers only) and check shapes, label dtype and ``roi``."""
    headers = _source_headers(spec)
    shapes = {role: shape for role, (shape, _) in headers.items()}
    if len(set(shapes.values())) > 1:
        files = ", ".join(
            f"{role} {describe_source(getattr(spec, role))} {list(shape)}" for role, shape in shapes.items()
        )
        raise UserError(f"dataset '{spec.name}': image, labels and mask shapes differ: {files}")
    source_shape = shapes["image"]
    labels_dtype = headers["labels"][1] if "labels" in headers else None
    if labels_dtype is not None and labels_dtype.kind not in "ui":
        raise UserError(
            f"dataset '{spec.name}' labels {describe_source(spec.labels or {})}: labels must be integers, "
            f"got {labels_dtype}"
        )
    shape = source_shape
    if spec.roi is not None:
        begin, size = spec.roi.begin, spec.roi.shape
        if 0 in size:
            raise UserError(f"dataset '{spec.name}': roi shape {list(size)} is empty")
        if any(b + s > n for b, s, n in zip(begin, size, source_shape, strict=True)):
            end = [b + s for b, s in zip(begin, size, strict=True)]
            raise UserError(
                f"dataset '{spec.name}': roi {list(begin)}..{end} lies outside the volume of shape {list(source_shape)}"
            )
        shape = size
    return DatasetHeader(source_shape, {role: dtype for role, (_, dtype) in headers.items()}, shape)


def _network_key(model: ModelSettings) -> str:
    """What a network check depends on: the model entry and the pipeline's code."""
    record = json.dumps([plain_data(model), pipeline_lib.__version__, git_commit()], sort_keys=True, default=str)
    return hashlib.sha256(record.encode()).hexdigest()


def check_models(
    settings: Settings, shapes: Mapping[str, Shape3], check_networks: bool = True, cache: Path | None = None
) -> None:
    """Every model builds (without weights) and runs its patch; the patch fits its volumes.

    ``cache`` (a JSON file) remembers the model entries whose network check passed with this
    code, so later runs skip importing torch for them.
    """
    passed: list[str] = []
    if cache is not None and cache.is_file():
        with contextlib.suppress(ValueError):
            passed = list(json.loads(cache.read_text()))
    training = [*settings.datasets_with_role("train"), *settings.datasets_with_role("val")]
    for name, model in settings.models.items():
        for dataset in dict.fromkeys(training):
            if any(p > s for p, s in zip(model.patch_shape, shapes[dataset], strict=True)):
                raise ConfigError(
                    f"config key 'models.{name}.patch_shape': {list(model.patch_shape)} is larger than "
                    f"dataset '{dataset}' of shape {list(shapes[dataset])}"
                )
        key = _network_key(model)
        if not check_networks or key in passed:
            continue
        try:
            run_on_meta(model)
        except ConfigError as e:
            raise ConfigError(f"config key 'models.{name}': {e}") from None
        passed.append(key)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(passed[-100:]))


def _meta_limit(error: Exception) -> bool:
    """Whether ``error`` is the meta device's limit (data-dependent code), not a mistake."""
    return "meta" in str(error).lower()


def run_on_meta(model: ModelSettings) -> None:
    """Build the model's network on the ``meta`` device and pass one patch through it."""
    import torch

    from pipeline_lib.models import create_network

    with torch.device("meta"):
        try:
            net = create_network(model.network)
        except NotImplementedError:  # an operation without a meta kernel: checked when training starts
            return
        except (ValueError, RuntimeError, AssertionError, IndexError) as e:  # the factory refused its params
            if _meta_limit(e):
                return
            first = " ".join(str(e).split())[:300]
            raise ConfigError(f"architecture '{model.architecture}' refuses its architecture_params: {first}") from None
        patch = torch.empty((1, 1, *model.patch_shape))
        try:
            net.eval()(patch)
        except NotImplementedError:  # an operation without a meta kernel: the shapes are unknown
            return
        except (RuntimeError, ValueError, IndexError) as e:
            if _meta_limit(e):
                return
            first = " ".join(str(e).split())[:300]
            raise ConfigError(f"patch_shape {list(model.patch_shape)} does not fit the network: {first}") from None


def check_run(settings: Settings, check_networks: bool = True, cache: Path | None = None) -> dict[str, Shape3]:
    """Every start-up check; returns the assembled shape of each selected dataset.

    ``check_networks=False`` skips building the networks (and importing torch); ``cache``:
    see :func:`check_models`.
    """
    shapes = {name: dataset_header(spec).shape for name, spec in settings.datasets.items()}
    check_models(settings, shapes, check_networks, cache)
    return shapes


__all__ = ["DatasetHeader", "check_models", "check_run", "dataset_header", "describe_source", "run_on_meta"]
