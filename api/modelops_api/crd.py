"""The CRDs, generated from the typed spec (`modelops_api.spec`), as kubebuilder makes them from Go.

`python -m modelops_api` writes `crds/` and the chart's templates of the same CRDs (and the tables
of docs/api.md); `--check` exits 1 when a committed file differs from what the classes generate.
The chart renders its CRDs as templates, not from a `crds/` folder that Helm installs once and
never upgrades: behind `crds.enabled`, with the chart's labels and, under `crds.keep`, Helm's keep
policy, so `helm upgrade` applies a changed schema and `helm uninstall` leaves every Model.

Pydantic's JSON schema is turned into a Kubernetes structural schema: references inlined,
optional fields as plain properties, OpenAPI v3.0 exclusive bounds, free-form objects as
`x-kubernetes-preserve-unknown-fields`, and no empty defaults (an absent list or map means empty,
and leaving it out keeps the stored spec — and so its hash — as the user wrote it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelops_api import contract
from modelops_api.spec import ModelSpec, ModelVersionSpec

Schema = dict[str, Any]
# What a Service's name must be; a Model's name becomes its Service's (a custom resource's name need
# only be a DNS subdomain, which may start with a digit or hold dots).
DNS_1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# JSON-schema keys that a structural schema keeps, in the order they are written.
KEPT = (
    "description", "type", "required", "enum", "default", "format", "pattern",
    "minLength", "maxLength", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
    "minItems", "maxItems", "maxProperties", "items", "properties", "additionalProperties",
)  # fmt: skip


def structural(schema: Schema, definitions: dict[str, Schema]) -> Schema:
    """One pydantic JSON-schema node as a Kubernetes structural schema node."""
    if "$ref" in schema:
        target = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return structural({**target, **rest}, definitions)
    if "anyOf" in schema:  # `X | None`: the field may be left out, never null
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {schema['anyOf']} in a structural schema")
        merged = {**branches[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
        return structural(merged, definitions)  # (its `default: null` is dropped below)
    if "const" in schema:
        schema = {**{k: v for k, v in schema.items() if k != "const"}, "enum": [schema["const"]]}
    out: Schema = {}
    if "enum" in schema and "type" not in schema:
        out["type"] = "string"
    for key in KEPT:
        if key not in schema:
            continue
        value = schema[key]
        if key == "default" and value in ({}, [], None):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum"):  # JSON schema 2020 -> OpenAPI 3.0
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "items":
            if isinstance(value, list) or "prefixItems" in schema:
                raise ValueError("fixed-length tuples have no structural schema")
            out["items"] = structural(value, definitions)
        elif key == "properties":
            out["properties"] = {k: structural(v, definitions) for k, v in value.items()}
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out["additionalProperties"] = structural(value, definitions)
        else:
            out[key] = value
    free = "properties" not in out and "additionalProperties" not in out
    if out.get("type") == "object" and free:
        out["x-kubernetes-preserve-unknown-fields"] = True
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
    return out


def openapi(cls: type[BaseModel]) -> Schema:
    """The structural schema of a spec class."""
    raw = cls.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def _columns(*columns: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    return list(columns)


def model_crd() -> Schema:
    spec = openapi(ModelSpec)
    return _crd(
        header=(
            "The Model: one manifest a user writes for a model's whole life cycle (training, "
            "serving,\nmonitoring). The operator never writes its spec, only its status. "
            "docs/api.md explains every field."
        ),
        kind="Model",
        plural=contract.MODELS,
        short="mdl",
        columns=_columns(
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion"},
            {
                "name": "Canary",
                "type": "string",
                "jsonPath": ".status.canary.version",
                "priority": 1,
            },
            {
                "name": "Weight",
                "type": "integer",
                "jsonPath": ".status.canary.weight",
                "description": "canary traffic share in percent",
            },
            {"name": "Accuracy", "type": "number", "jsonPath": ".status.accuracy"},
            {
                "name": "Drift",
                "type": "number",
                "jsonPath": ".status.drift",
                "description": "largest feature PSI of the stable version",
            },
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                "priority": 1,
            },
            {
                "name": "URL",
                "type": "string",
                "jsonPath": ".status.url",
                "description": "where the Gateway API router serves the model",
                "priority": 1,
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
        spec=spec,
        rules=[
            {
                "rule": "!has(self.spec.serving) || !has(self.spec.serving.version) || "
                "self.spec.serving.version == '' || "
                "self.spec.serving.version.startsWith(self.metadata.name + '-')",
                "message": "spec.serving.version must name a version of this model "
                "(<model name>-<suffix>)",
                "fieldPath": ".spec.serving.version",
            },
            {
                "rule": "size(self.metadata.name) <= 50",
                "message": "metadata.name must be at most 50 characters "
                "(version and child names append to it)",
            },
            {
                "rule": f"self.metadata.name.matches('{DNS_1035_LABEL}')",
                "message": "metadata.name must be a DNS-1035 label (lower-case letters, digits and "
                "'-', starting with a letter and ending with a letter or digit): it names the "
                "model's Service",
            },
        ],
    )


def model_version_crd() -> Schema:
    spec = openapi(ModelVersionSpec)
    spec["x-kubernetes-validations"] = [
        {
            "rule": "self == oldSelf",
            "message": "a ModelVersion's spec is immutable: it records what was trained",
        }
    ]
    return _crd(
        header=(
            "A ModelVersion: one training run of a Model, its experiment record. Created and "
            "owned by the\noperator, never edited by hand; `kubectl get modelversions` is the "
            "experiment table."
        ),
        kind="ModelVersion",
        plural=contract.MODEL_VERSIONS,
        short="mv",
        columns=_columns(
            {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
            {"name": "Reason", "type": "string", "jsonPath": ".spec.reason"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Accuracy", "type": "number", "jsonPath": ".status.metrics.accuracy"},
            {"name": "F1", "type": "number", "jsonPath": ".status.metrics.f1_macro", "priority": 1},
            {"name": "R2", "type": "number", "jsonPath": ".status.metrics.r2", "priority": 1},
            {"name": "Rows", "type": "integer", "jsonPath": ".status.rows.clean", "priority": 1},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
        spec=spec,
        rules=[],
    )


def _crd(
    *,
    header: str,
    kind: str,
    plural: str,
    short: str,
    columns: list[dict[str, Any]],
    spec: Schema,
    rules: list[dict[str, str]],
) -> Schema:
    root: Schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    if rules:
        root["x-kubernetes-validations"] = rules
    return {
        "#": header,
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{contract.GROUP}"},
        "spec": {
            "group": contract.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["modelops"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": contract.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes a part the schema repeats (one class's rules under two fields) out each time, never
    as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(crd: Schema) -> str:
    """The CRD as YAML under its header comment, with a note that it is generated."""
    header = "".join(f"# {line}\n" for line in crd["#"].splitlines())
    header += "# Generated from api/modelops_api/spec.py by `make api`; do not edit.\n"
    body = {k: v for k, v in crd.items() if k != "#"}
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + text


# What the chart's template adds under the CRD's metadata.name: its labels and the keep policy.
CHART_METADATA = """\
  labels:
    {{- include "modelops.crdLabels" . | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    # helm uninstall leaves the CRD: deleting it would delete every Model in the cluster.
    helm.sh/resource-policy: keep
  {{- end }}
"""


def render_template(crd: Schema) -> str:
    """The CRD as a template of the chart: `render`'s text behind `crds.enabled`, with the
    chart's metadata, and any `{{` of the schema's text escaped from Go's template engine."""
    text = render(crd).replace("{{", '{{ "{{" }}')
    name = f"metadata:\n  name: {crd['metadata']['name']}\n"
    if text.count(name) != 1:
        raise ValueError(f"the CRD text has no single {name!r} to add the chart's metadata to")
    text = text.replace(name, name + CHART_METADATA)
    return "{{- if .Values.crds.enabled }}\n" + text + "{{- end }}\n"


def files(root: Path) -> dict[Path, str]:
    """Every generated file under the repository `root`, with its text: the plain CRDs in `crds/`
    and the chart's templates of them in `charts/modelops/templates/crds/`."""
    crds = {
        f"{contract.GROUP}_{contract.MODELS}.yaml": model_crd(),
        f"{contract.GROUP}_{contract.MODEL_VERSIONS}.yaml": model_version_crd(),
    }
    templates = root / "charts" / "modelops" / "templates" / "crds"
    out: dict[Path, str] = {}
    for name, crd in crds.items():
        out[root / "crds" / name] = render(crd)
        out[templates / name] = render_template(crd)
    return out
