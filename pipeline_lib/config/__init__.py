"""Load and validate the run configuration once, into typed settings.

``load_config(config)`` validates ``config/config.yaml`` and the datasets file it names
against the JSON schemas (filling in their defaults), checks cross-references (dataset
names, roles, files on disk) and returns a :class:`Settings`. Every user mistake raises a
:class:`~pipeline_lib.errors.ConfigError` whose message names the file and key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.config.schema import validate_with_defaults
from pipeline_lib.config.settings import (
    AssembleSettings,
    DatasetSpec,
    DecoderSettings,
    DecodeSettings,
    EnsembleSettings,
    EvaluateSettings,
    ModelSettings,
    PredictSettings,
    ResourceSettings,
    Roi,
    Settings,
    SyntheticSpec,
)
from pipeline_lib.errors import ConfigError, UserError
from pipeline_lib.offsets import NEAREST_NEIGHBOUR_OFFSETS, check_offsets, missing_nearest_neighbours

__all__ = [
    "AssembleSettings",
    "DatasetSpec",
    "DecoderSettings",
    "DecodeSettings",
    "EnsembleSettings",
    "EvaluateSettings",
    "ModelSettings",
    "PredictSettings",
    "ResourceSettings",
    "Settings",
    "build",
    "job_config",
    "job_settings",
    "load_config",
    "load_datasets",
    "read_yaml",
    "validate_config",
]

T = typing.TypeVar("T")


def build(cls: type[T], data: Any) -> T:
    """Build the dataclass ``cls`` from validated plain data, converting lists to tuples.

    Indexes strictly: a field missing from ``data`` is a bug (the schema fills defaults).
    """
    return typing.cast(T, _convert(cls, data))


def _convert(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _convert(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)})
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(args[0], value)
    if origin is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_convert(items[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(items, value, strict=True))
    if origin is dict:
        _, value_type = typing.get_args(tp)
        return {k: _convert(value_type, v) for k, v in value.items()}
    if tp is float:
        return float(value)
    return value


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in first:
                raise _DuplicateKey(f"line {line}: key '{key}' is written twice (first on line {first[key]})")
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing or malformed file, or a key written twice in one
    mapping, is a :class:`ConfigError` (with the line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def _absolute_sources(entry: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    for role in ("image", "labels", "mask"):
        source = entry.get(role)
        if source is None:
            continue
        for key in ("path", "glob"):
            if key in source:
                source[key] = str((base_dir / source[key]).resolve())
    return entry


def load_datasets(path: str | Path) -> dict[str, DatasetSpec]:
    """All dataset declarations of a datasets file, with source paths made absolute."""
    path = Path(path)
    data = validate_with_defaults(read_yaml(path), "datasets", str(path))
    specs = {}
    for name, entry in data["datasets"].items():
        entry = _absolute_sources(entry, path.resolve().parent)
        specs[name] = DatasetSpec(
            name=name,
            voxel_size=tuple(float(v) for v in entry["voxel_size"]),  # type: ignore[arg-type]
            roles=tuple(entry["roles"]),
            image=entry.get("image"),
            labels=entry.get("labels"),
            mask=entry.get("mask"),
            synthetic=build(SyntheticSpec, entry["synthetic"]) if "synthetic" in entry else None,
            roi=build(Roi, entry["roi"]) if "roi" in entry else None,
        )
    return specs


def _check_datasets(selected: list[str], declared: Mapping[str, DatasetSpec], datasets_file: str) -> None:
    for name in selected:
        if name not in declared:
            known = ", ".join(sorted(declared))
            raise ConfigError(f"config key 'datasets': unknown dataset '{name}'; {datasets_file} declares: {known}")
    roles = {role for name in selected for role in declared[name].roles}
    for role in ("train", "test"):
        if role not in roles:
            raise ConfigError(f"config key 'datasets': no selected dataset has role '{role}' (selected: {selected})")
    for name in selected:
        spec = declared[name]
        if ("train" in spec.roles or "val" in spec.roles) and not spec.has_labels:
            raise ConfigError(f"{datasets_file}: dataset '{name}' has role train/val but no 'labels' source")


def _check_files(specs: list[DatasetSpec]) -> None:
    from pipeline_lib.io.sources import source_files

    for spec in specs:
        for role in ("image", "labels", "mask"):
            source = getattr(spec, role)
            if source is None:
                continue
            try:
                files = source_files(source, Path("/"))
            except ConfigError:
                raise
            except UserError as e:
                raise ConfigError(f"dataset '{spec.name}' {role}: {e}") from None
            if not files:
                raise ConfigError(
                    f"dataset '{spec.name}' {role}: no files match {source.get('glob') or source.get('path')}"
                )
            for file in files:
                if not Path(file).exists():
                    raise ConfigError(f"dataset '{spec.name}' {role}: file not found: {file}")


def _check_block_shapes(data: Mapping[str, Any]) -> None:
    """Block jobs write whole chunks only: each block shape must be a multiple of its chunk shape."""
    for stage in ("predict", "decode"):
        block, chunk = data[stage]["block_shape"], data[stage]["chunk_shape"]
        if any(b % c for b, c in zip(block, chunk, strict=True)):
            raise ConfigError(
                f"config key '{stage}.block_shape': {block} must be a multiple of '{stage}.chunk_shape' {chunk}"
                " (concurrent block jobs would write the same chunks)"
            )


def _check_offsets(data: Mapping[str, Any]) -> None:
    """Every decoder reads the nearest-neighbour affinities, so every model must predict them; mutex
    watershed reads every offset across block faces, which works for axis-aligned offsets only."""
    for name, model in data["models"].items():
        missing = missing_nearest_neighbours(model["offsets"])
        if missing:
            raise ConfigError(
                f"config key 'models.{name}.offsets': must include the nearest-neighbour offsets "
                f"{list(NEAREST_NEIGHBOUR_OFFSETS)} (every decoder reads them); missing {missing}"
            )
    mutex = sorted(name for name, decoder in data["decoders"].items() if decoder["method"] == "mutex_watershed")
    for name, model in data["models"].items():
        diagonal = [list(o) for o in model["offsets"] if sum(1 for v in o if v) > 1]
        if mutex and diagonal:
            raise ConfigError(
                f"config key 'models.{name}.offsets': diagonal offsets {diagonal} cannot be decoded by "
                f"decoder '{mutex[0]}' (mutex_watershed): its region graph joins blocks across faces along "
                "one axis at a time; use axis-aligned long-range offsets, or another decoder"
            )


def _check_tta(data: Mapping[str, Any]) -> None:
    """Every model's offsets can be inverted under every test-time augmentation variant."""
    tta = data["predict"]["tta"]
    for name, model in data["models"].items():
        try:
            check_offsets(tta["flip"], tta["transpose"], model["offsets"])
        except ConfigError as e:
            raise ConfigError(f"{e} (model '{name}')") from None


def _check_ensembles(data: Mapping[str, Any]) -> None:
    """Ensemble members are declared models with the same offsets and patch shape; names are unique."""
    models = data["models"]
    for name, ensemble in data["ensembles"].items():
        key = f"config key 'ensembles.{name}"
        if name in models:
            raise ConfigError(f"{key}': '{name}' is also a model name; predictions are named after either")
        unknown = [m for m in ensemble["models"] if m not in models]
        if unknown:
            raise ConfigError(f"{key}.models': unknown model(s) {unknown}; declared models: {sorted(models)}")
        first = ensemble["models"][0]
        for member in ensemble["models"][1:]:
            for field in ("offsets", "patch_shape"):
                if models[member][field] != models[first][field]:
                    raise ConfigError(
                        f"{key}.models': members must share '{field}'; "
                        f"'{first}' has {models[first][field]}, '{member}' has {models[member][field]}"
                    )


def validate_config(config: Mapping[str, Any], check_files: bool = True) -> tuple[dict[str, Any], Settings]:
    """Validate a config mapping (as Snakemake loads it) and everything it refers to, once.

    Returns the config with every schema default filled in, and the typed settings. Datasets
    not listed under ``datasets`` are validated for syntax only, so a datasets file may
    declare data that is absent on this machine.
    """
    data = validate_with_defaults(config, "config", "config")
    _check_block_shapes(data)
    _check_offsets(data)
    _check_tta(data)
    _check_ensembles(data)
    declared = load_datasets(data["datasets_file"])
    _check_datasets(data["datasets"], declared, data["datasets_file"])
    selected = {name: declared[name] for name in data["datasets"]}
    has_val = any("val" in spec.roles for spec in selected.values())
    for name, decoder in data["decoders"].items():
        if decoder["tune_threshold"] and not has_val:
            raise ConfigError(
                f"config key 'decoders.{name}.tune_threshold': needs a selected dataset with role 'val' to sweep on"
            )
    if check_files:
        _check_files(list(selected.values()))
    return data, _settings(data, selected)


def load_config(config: Mapping[str, Any], check_files: bool = True) -> Settings:
    """The typed settings of a config mapping, validated (:func:`validate_config`)."""
    return validate_config(config, check_files)[1]


def _settings(data: Mapping[str, Any], datasets: dict[str, DatasetSpec]) -> Settings:
    return Settings(
        datasets=datasets,
        models=build(dict[str, ModelSettings], data["models"]),
        ensembles=build(dict[str, EnsembleSettings], data["ensembles"]),
        decoders=build(dict[str, DecoderSettings], data["decoders"]),
        assemble=build(AssembleSettings, data["assemble"]),
        predict=build(PredictSettings, data["predict"]),
        decode=build(DecodeSettings, data["decode"]),
        evaluate=build(EvaluateSettings, data["evaluate"]),
        resources=build(dict[str, ResourceSettings], data["resources"]),
    )


#: The key under which :func:`job_config` carries the selected datasets, resolved.
RESOLVED_DATASETS = "_resolved_datasets"


def job_config(data: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """What the workflow hands its jobs as ``config`` once validated: the config with its
    defaults (``data`` of :func:`validate_config`) and the selected datasets, resolved, so
    that :func:`job_settings` rebuilds the settings without validating or reading a file."""
    datasets = {name: dataclasses.asdict(spec) for name, spec in settings.datasets.items()}
    return {**data, RESOLVED_DATASETS: datasets}


def job_settings(config: Mapping[str, Any]) -> Settings:
    """The typed settings of a job, from the :func:`job_config` its workflow validated at start."""
    if RESOLVED_DATASETS not in config:
        raise ConfigError("this config was not validated at workflow start (run the job through the workflow)")
    datasets = {name: build(DatasetSpec, spec) for name, spec in config[RESOLVED_DATASETS].items()}
    return _settings(config, datasets)
