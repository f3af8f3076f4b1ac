"""The schema files are valid as written: no YAML slip turns prose into stray keys.

In a YAML flow mapping (``{type: string, description: a, b}``) an unquoted comma ends the
value, so ``description: a, b`` becomes the description ``a`` plus a key ``b``. Walking every
schema object and allowing only JSON Schema keywords catches that and any misspelled keyword.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pipeline_lib.config.schema import SCHEMA_DIR, load_schema

KEYWORDS = {
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "title",
    "description",
    "type",
    "properties",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "required",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "default",
    "enum",
    "const",
    "examples",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "minProperties",
    "maxProperties",
}
SCHEMA_MAPS = {"properties", "$defs", "patternProperties"}  # name -> schema
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}  # [schema, ...]
SCHEMA_VALUES = {"items", "additionalProperties", "not", "if", "then", "else", "propertyNames"}


def schema_nodes(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside ``node`` with its path (``default``, ``enum``… are data, not schemas)."""
    if not isinstance(node, dict):
        return
    yield where, node
    for key, value in node.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for name, child in value.items():
                yield from schema_nodes(child, f"{where}/{key}/{name}")
        elif key in SCHEMA_LISTS and isinstance(value, list):
            for i, child in enumerate(value):
                yield from schema_nodes(child, f"{where}/{key}/{i}")
        elif key in SCHEMA_VALUES:
            yield from schema_nodes(value, f"{where}/{key}")


def all_schemas() -> list[tuple[str, dict[str, Any]]]:
    schemas = [(p.name, load_schema(p.name.removesuffix(".schema.yaml"))) for p in SCHEMA_DIR.glob("*.schema.yaml")]
    schemas += [(p.name, json.loads(p.read_text())) for p in SCHEMA_DIR.glob("*.json")]
    assert {"config.schema.yaml", "datasets.schema.yaml"} <= {name for name, _ in schemas}
    return schemas


@pytest.mark.parametrize(("name", "schema"), all_schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_schema_objects_use_only_json_schema_keywords_and_string_descriptions(name, schema):
    problems = []
    for where, node in schema_nodes(schema, name):
        problems += [f"{where}: unknown key {key!r}" for key in node if key not in KEYWORDS]
        if "description" in node and not (isinstance(node["description"], str) and node["description"].strip()):
            problems.append(f"{where}: description {node['description']!r} is not one non-empty string")
    assert not problems, "\n".join(problems)


def test_the_walker_catches_a_comma_in_an_unquoted_flow_description():
    """The slip this test exists for, parsed by YAML exactly as it was in the schema."""
    node = yaml.safe_load('{type: string, default: "", description: Extra sbatch flags, e.g. "--qos=high".}')
    keys = [key for _, n in schema_nodes({"properties": {"slurm_extra": node}}, "x") for key in n]
    assert node["description"] == "Extra sbatch flags"
    assert set(keys) - KEYWORDS == {'e.g. "--qos=high".'}


def test_resource_descriptions_are_whole():
    resources = load_schema("config")["$defs"]["resources"]["properties"]
    assert resources["gpus"]["description"] == "GPUs per job (train, predict)."
    assert resources["slurm_extra"]["description"] == 'Extra sbatch flags, e.g. "--qos=high".'
