"""Generate ``config/README.md`` from the JSON schemas, so the docs cannot drift.

    python -m pipeline_lib.config.docs > config/README.md

``tests/config/test_docs.py`` fails when the committed file differs from the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pipeline_lib.config.schema import load_schema

HEADER = """\
# Configuration reference

Generated from `pipeline_lib/schemas/*.schema.yaml` by `python -m pipeline_lib.config.docs`;
do not edit by hand. Defaults live in the schemas only. A key path like `models.<name>.offsets`
means: under `models`, in any named entry, the key `offsets`.
"""


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` merged in (keys beside the ``$ref`` win)."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type", "")
    if kind == "array" and "items" in node:
        inner = _resolve(schema, node["items"])
        return f"list of {_type(schema, inner)}"
    return str(kind) if kind else "object"


def _rows(schema: dict[str, Any], node: dict[str, Any], path: str) -> Iterator[tuple[str, str, str, str]]:
    node = _resolve(schema, node)
    for name, child in node.get("properties", {}).items():
        child = _resolve(schema, child)
        key = f"{path}.{name}" if path else name
        default = (
            json.dumps(child["default"])
            if "default" in child
            else "(required)"
            if name in node.get("required", [])
            else ""
        )
        description = " ".join(str(child.get("description", "")).split())
        yield key, _type(schema, child), default, description
        if "properties" in child:
            yield from _rows(schema, child, key)
        additional = child.get("additionalProperties")
        if isinstance(additional, dict):
            yield from _rows(schema, additional, f"{key}.<name>")
        items = child.get("items")
        if isinstance(items, dict) and "properties" in _resolve(schema, items):
            yield from _rows(schema, items, f"{key}[]")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    parts = [HEADER]
    for name, title in (("config", "config/config.yaml"), ("datasets", "config/datasets.yaml")):
        schema = load_schema(name)
        parts.append(f"\n## `{title}`\n\n{' '.join(str(schema.get('description', '')).split())}\n")
        parts.append("| key | type | default | description |\n|---|---|---|---|")
        for key, kind, default, description in _rows(schema, schema, ""):
            cells = (f"`{key}`", kind, _escape(default), _escape(description))
            parts.append("| " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
