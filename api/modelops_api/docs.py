"""The field tables of docs/api.md, generated from the same schema as the CRDs.

Each table sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->` in docs/api.md; the
prose around them is written by hand. A row is a field's path, its type and bounds, its default
(`required`, or the value the API server fills in, or `—` when absent means unset or empty) and its
description.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from modelops_api.crd import Schema, openapi
from modelops_api.spec import (
    DURATION_PATTERN,
    ModelVersionSpec,
    MonitoringSpec,
    ServingSpec,
    TrainingSpec,
)

TABLES: dict[str, Schema] = {
    "spec.training": openapi(TrainingSpec),
    "spec.serving": openapi(ServingSpec),
    "spec.monitoring": openapi(MonitoringSpec),
    "modelversion.spec": openapi(ModelVersionSpec),
}
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w.]+) -->\n).*?(<!-- end: (?P=name) -->)", re.S)


def rows(schema: Schema, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(path, type, default, notes) for every field under `schema`, depth first."""
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        item = field.get("items", {})
        if field.get("type") == "object" and "properties" in field:
            yield from rows(field, path + ".")
        elif field.get("type") == "array" and "properties" in item:
            yield path + "[]", "list" + _count(field), _default(field, name in required), ""
            yield from rows(item, path + "[].")
        else:
            yield path, _type(field), _default(field, name in required), _notes(field)


def _type(field: Schema) -> str:
    if "enum" in field:
        return ", ".join(f"`{v}`" for v in field["enum"])
    kind = field.get("type", "object")
    if kind == "array":
        return f"list of {_type(field.get('items', {}))}" + _count(field)
    if kind == "object":
        return "map" if "additionalProperties" in field else "object"
    if field.get("pattern") == DURATION_PATTERN:
        return "duration"
    names = {"integer": "int", "number": "number", "boolean": "bool"}
    return names.get(str(kind), str(kind)) + _range(field)


def _range(field: Schema) -> str:
    low, high = field.get("minimum"), field.get("maximum")
    if low is not None and high is not None:
        if field.get("exclusiveMinimum"):
            return f" > {_number(low)}, ≤ {_number(high)}"
        return f" {_number(low)}-{_number(high)}"
    if low is not None:
        return f" {'>' if field.get('exclusiveMinimum') else '≥'} {_number(low)}"
    if high is not None:
        return f" ≤ {_number(high)}"
    return ""


def _count(field: Schema) -> str:
    low, high = field.get("minItems"), field.get("maxItems")
    if low is not None and high is not None:
        return f", {low}-{high} items"
    if high is not None:
        return f", at most {high} items"
    return ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(field: Schema, required: bool) -> str:
    if required:
        return "required"
    if "default" in field:
        value = field["default"]
        text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
        return f"`{text}`"
    return "—"


def _notes(field: Schema) -> str:
    """The description, then what the field's own CEL rules say."""
    rules = [str(r["message"]) for r in field.get("x-kubernetes-validations", [])]
    notes = "; ".join(n for n in (field.get("description", ""), *rules) if n)
    return notes.replace("|", "\\|")


def table(schema: Schema) -> str:
    lines = ["| field | type | default | notes |", "| --- | --- | --- | --- |"]
    lines += [f"| `{p}` | {t} | {d} | {n} |" for p, t, d, n in rows(schema)]
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """`text` (docs/api.md) with every generated block replaced by its table."""
    missing = set(TABLES) - {m.group("name") for m in _BLOCK.finditer(text)}
    if missing:
        raise ValueError(f"docs/api.md has no generated block for {', '.join(sorted(missing))}")
    return _BLOCK.sub(lambda m: m.group(1) + table(TABLES[m.group("name")]) + m.group(3), text)
