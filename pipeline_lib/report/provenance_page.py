"""One HTML page with the provenance recorded by each output of a run."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.io.volumes import atomic_file
from pipeline_lib.report.info import read_record

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "h2{font-size:15px;margin-top:1.5em;font-family:monospace}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}"
    "th{background:#eee;white-space:nowrap}pre{margin:0;font-size:12px}"
)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, width=100, default_flow_style=None).strip()


def _section(path: str | Path) -> str:
    record = read_record(path)
    prov = record["provenance"]
    rows = [
        ("stage", prov.get("stage", "")),
        ("pipeline version", prov.get("pipeline_version", "")),
        ("git commit", prov.get("git_commit", "")),
        ("created (UTC)", prov.get("created", "")),
        ("inputs", "\n".join(prov.get("inputs", [])) or "(none: built from the dataset declaration)"),
    ]
    extra = {k: v for k, v in record.get("attributes", {}).items() if k not in ("complete",)}
    if "checkpoints" in extra:
        rows.append(("checkpoints", _yaml(extra.pop("checkpoints"))))
    if extra:
        rows.append(("other attributes", _yaml(extra)))
    if record.get("arrays"):
        rows.append(
            (
                "arrays",
                _yaml(
                    {
                        k: {"shape": v["shape"], "dtype": v["dtype"], "voxel_size_nm": v["voxel_size_nm"]}
                        for k, v in record["arrays"].items()
                    }
                ),
            )
        )
    body = "".join(f"<tr><th>{html.escape(k)}</th><td><pre>{html.escape(str(v))}</pre></td></tr>" for k, v in rows)
    settings = html.escape(_yaml(prov.get("settings", {})))
    return (
        f"<h2 id='{html.escape(str(path))}'>{html.escape(str(path))}</h2><table>{body}</table>"
        f"<details><summary>settings</summary><pre>{settings}</pre></details>"
    )


def write_provenance_page(
    outputs: Sequence[str | Path], output: str | Path, title: str = "Provenance of the outputs"
) -> None:
    """Write ``output`` (HTML): for each zarr store or JSON in ``outputs``, in order, the stage,
    pipeline version, git commit, creation time, inputs, checkpoints and settings it records."""
    index = "".join(f"<li><a href='#{html.escape(str(p))}'>{html.escape(str(p))}</a></li>" for p in outputs)
    sections = "".join(_section(p) for p in outputs)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>{index}</ul>{sections}</body></html>"
    )
    with atomic_file(output) as tmp:
        tmp.write_text(page)


__all__ = ["write_provenance_page"]
