"""What an output records about itself: provenance, other attributes, arrays (``info`` command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
import zarr

from pipeline_lib.errors import UserError
from pipeline_lib.evaluation.metrics import SegmentationScores
from pipeline_lib.io.volumes import SCALE0, has_array, store_attrs, voxel_size

SCORE_KEYS = tuple(c for c in SegmentationScores.COLUMNS if c != "voi")  # the fields an evaluation JSON records


def _arrays(store: Path) -> dict[str, dict[str, Any]]:
    arrays = {}
    for child in sorted(p.name for p in store.iterdir() if p.is_dir()):
        if has_array(store, child):
            array = zarr.open_array(str(store / child / SCALE0), mode="r")
            arrays[child] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "chunks": list(array.chunks),
                "voxel_size_nm": list(voxel_size(store, child)),
                **({"attributes": dict(array.attrs)} if array.attrs else {}),
            }
    return arrays


def read_record(path: str | Path) -> dict[str, Any]:
    """The provenance and other recorded facts of a zarr store or a JSON output.

    Keys: ``path``, ``kind`` (``zarr`` or ``json``), ``provenance``, and ``attributes`` (the
    store's other root attributes) and ``arrays`` for a store, or ``scores`` and
    ``segmentation_provenance`` for an evaluation JSON. Raises :class:`UserError` for a path
    that is neither or records no provenance.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.is_dir() and (path / "zarr.json").exists():
        attrs = store_attrs(path)
        record: dict[str, Any] = {"path": str(path), "kind": "zarr", "provenance": attrs.pop("provenance", None)}
        record["attributes"] = attrs
        record["arrays"] = _arrays(path)
    elif path.is_file() and path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a pipeline JSON output")
        record = {"path": str(path), "kind": "json", "provenance": data.get("provenance")}
        record["scores"] = {k: data[k] for k in SCORE_KEYS if k in data}
        if "segmentation_provenance" in data:
            record["segmentation_provenance"] = data["segmentation_provenance"]
    else:
        raise UserError(f"{path}: neither a zarr store (directory with zarr.json) nor a .json output")
    if not record["provenance"]:
        raise UserError(f"{path}: records no provenance (not written by this pipeline?)")
    return record


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of plain values on one line (offsets, shapes, voxel sizes)."""


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, (int, float, bool)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _list)


def format_record(record: dict[str, Any]) -> str:
    """Human-readable YAML of a :func:`read_record` result, provenance first."""
    order = ["path", "kind", "provenance", "scores", "attributes", "arrays", "segmentation_provenance"]
    ordered = {k: record[k] for k in order if k in record and record[k] not in (None, {}, [])}
    return yaml.dump(json.loads(json.dumps(ordered, default=str)), Dumper=_Dumper, sort_keys=False, width=100)


__all__ = ["format_record", "read_record"]
