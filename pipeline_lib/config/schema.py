"""JSON-schema validation that also fills in the defaults written in the schema.

The schemas in ``pipeline_lib/schemas/`` are the single home of every default. Unlike
Snakemake's ``validate()``, defaults are filled inside ``additionalProperties`` entries too
(every model and decoder gets its defaults), and errors become one line naming the key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipeline_lib.errors import ConfigError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``pipeline_lib/schemas/<name>.schema.yaml`` as a dict."""
    with open(SCHEMA_DIR / f"{name}.schema.yaml") as f:
        schema: dict[str, Any] = yaml.safe_load(f)
    return schema


def schema_defaults(section: str) -> dict[str, Any]:
    """The default of every key of config section ``section`` (as in ``config.schema.yaml``)."""
    properties = load_schema("config")["properties"][section]["properties"]
    return {key: copy.deepcopy(node["default"]) for key, node in properties.items() if "default" in node}


def _fill_defaults(validator_class: Any) -> Any:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{error.message}{hint}"
    if error.validator == "oneOf" and error.context:
        return "; ".join(sorted({e.message for e in error.context}))
    return error.message


def validate_with_defaults(data: Mapping[str, Any], schema_name: str, source: str) -> dict[str, Any]:
    """A deep copy of ``data`` with schema defaults filled in; raises :class:`ConfigError`.

    ``source`` (a file name) prefixes the message so the user knows which file to fix.
    """
    instance = copy.deepcopy(dict(data))
    validator = _Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        error = errors[0]
        raise ConfigError(f"{source}: key '{_key_path(error)}': {_describe(error)}")
    # A second pass checks the defaults that were filled in during the first.
    errors = list(validator.iter_errors(instance))
    if errors:
        raise ConfigError(f"{source}: key '{_key_path(errors[0])}': {_describe(errors[0])}")
    return instance


def definition_defaults(data: Mapping[str, Any], definition: str) -> dict[str, Any]:
    """A deep copy of ``data`` with the defaults of the config schema's ``$defs/<definition>``
    filled in (nested definitions too). Nothing is validated: for plain data written by an
    older version (a checkpoint's hyperparameters) that lacks keys added since."""
    schema = {"$defs": load_schema("config")["$defs"], "$ref": f"#/$defs/{definition}"}
    instance = copy.deepcopy(dict(data))
    for _ in _Validator(schema).iter_errors(instance):
        pass  # iterating fills the defaults; old data need not satisfy today's constraints
    return instance
