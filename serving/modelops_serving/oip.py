"""The Open Inference Protocol (KServe's "V2" protocol, also Triton's and MLServer's) over REST.

Nothing here knows about HTTP or runs the model: this module turns the protocol's paths and
tensor JSON into what `/predict` takes (rows in schema order), and the runtime's answers back into
the protocol's JSON. The request then follows `/predict`'s own path (`Runtime.serve`): the same
validation of every value against the model's schema, the same scoring, the same monitoring
series, prediction ids and production recording.

A request carries its features in either form clients send:

- one tensor of shape [N, F], any name that is not a feature's, its columns the features in the
  model's order (what a Triton or KServe client sends for a numeric model);
- one tensor per feature, named by the feature, of shape [N] or [N, 1] (what MLServer's pandas
  codec sends; the only form for a model with categorical and numeric features, since a tensor
  has one datatype).

Numeric datatypes carry JSON numbers, `BYTES` carries strings; `BOOL` is refused (a boolean is
not a feature value, as in `/predict`). The answer has the output `predict` (class labels as
`BYTES`, or a regressor's values as `FP64`) and, for classifiers with probabilities,
`predict_proba` (`FP64`, [N, classes], the class order in its `parameters.classes`, a JSON list
as text since a parameter's value is a scalar). The prediction id `/feedback` takes is in the
answer's `parameters.request_id` (and is its `id` when the request gave none).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .schema import CATEGORICAL, Problem, Rejected, Schema, describe

NUMERIC_TYPES = frozenset(
    {
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "FP16",
        "FP32",
        "FP64",
    }
)
BYTES = "BYTES"
DATATYPES = NUMERIC_TYPES | {BYTES}
PREDICT, PROBA = "predict", "predict_proba"
PLATFORM = "scikit-learn"
MAX_PROBLEMS = 20

# /v2/health/live, /v2/health/ready, /v2, /v2/models/<name>[/versions/<v>][/ready|/infer]
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?/?$")
LIVE, READY, SERVER, MODEL, MODEL_READY, INFER = (
    "live",
    "ready",
    "server",
    "model",
    "model_ready",
    "infer",
)


@dataclass(frozen=True)
class Route:
    """Which protocol endpoint a path names, and the model (and version) it asks for."""

    kind: str
    model: str = ""
    version: str | None = None

    @property
    def method(self) -> str:
        """The one HTTP method the endpoint takes (GET ones take HEAD too)."""
        return "POST" if self.kind == INFER else "GET"


def route(path: str) -> Route | None:
    """The protocol endpoint of `path`, or None when it is not one."""
    if path in ("/v2", "/v2/"):
        return Route(SERVER)
    if path == "/v2/health/live":
        return Route(LIVE)
    if path == "/v2/health/ready":
        return Route(READY)
    match = _MODEL_PATH.match(path)
    if match is None:
        return None
    name, version, tail = match.groups()
    kind = {None: MODEL, "/ready": MODEL_READY, "/infer": INFER}[tail]
    return Route(kind, name, version)


def server_metadata() -> dict[str, Any]:
    """`GET /v2`: the server's name and version; it implements none of the protocol's optional
    extensions."""
    try:
        version = importlib.metadata.version("modelops")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "modelops", "version": version, "extensions": []}


def check_model(route: Route, model: str, version: str) -> None:
    """Rejected (404, `unknown_model`) unless the route names the served model and version."""
    if route.model != model:
        message = f"no model {route.model!r} here: this runtime serves {model!r}"
        raise Rejected([Problem("unknown_model", message, None, "model")], status=404)
    if route.version is not None and route.version != version:
        message = f"model {model!r} has no version {route.version!r} here: it serves {version!r}"
        raise Rejected([Problem("unknown_model", message, None, "version")], status=404)


def tensor_datatype(kind: str) -> str:
    return BYTES if kind == CATEGORICAL else "FP64"


def model_metadata(
    schema: Schema, model: str, version: str, task: str, classes: Sequence[str], proba: bool
) -> dict[str, Any]:
    """The protocol's model metadata: one input per feature (the form every model takes) and
    the outputs `predict` and, for classifiers with probabilities, `predict_proba`."""
    predict_type = BYTES if task == "classification" else "FP64"
    outputs = [{"name": PREDICT, "datatype": predict_type, "shape": [-1]}]
    if proba:
        outputs.append({"name": PROBA, "datatype": "FP64", "shape": [-1, len(classes)]})
    return {
        "name": model,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [
            {"name": f.name, "datatype": tensor_datatype(f.kind), "shape": [-1]}
            for f in schema.features
        ],
        "outputs": outputs,
    }


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request: its rows in schema order, its id and the outputs asked for."""

    rows: list[list[Any]]
    id: str | None
    outputs: tuple[str, ...] | None  # None: every output


def rows_hint(body: Any) -> int:
    """The batch size a body declares (its first input's first dimension), without checking it:
    whether to score it on the event loop or in a thread. 0 when it declares none."""
    try:
        first = body["inputs"][0]["shape"][0]
    except (TypeError, KeyError, IndexError):
        return 0
    return first if isinstance(first, int) and not isinstance(first, bool) else 0


class _Problems:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, reason: str, message: str, field: str | None, row: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(reason, message, row, field))

    def raise_any(self) -> None:
        if self.problems:
            raise Rejected(self.problems)


def _flatten(data: list[Any]) -> list[Any]:
    """The protocol allows nested lists in row-major order as well as a flat list."""
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]
    where: str  # "inputs[i]"


def _tensor(i: int, raw: Any, problems: _Problems) -> _Tensor | None:
    where = f"inputs[{i}]"
    if not isinstance(raw, dict):
        problems.add("invalid_tensor", f"{where} must be an object, got {describe(raw)}", where)
        return None
    name, shape, datatype, data = (raw.get(k) for k in ("name", "shape", "datatype", "data"))
    before = len(problems.problems)
    if not isinstance(name, str) or not name:
        problems.add("invalid_tensor", f"{where}.name must be a non-empty string", f"{where}.name")
        name = where
    label = f"input {name!r}"
    if not (
        isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        problems.add(
            "invalid_tensor",
            f"{label}: 'shape' must be a list of non-negative integers, got {describe(shape)}",
            f"{where}.shape",
        )
    if not isinstance(datatype, str):
        problems.add(
            "invalid_tensor",
            f"{label}: 'datatype' must be a string, got {describe(datatype)}",
            f"{where}.datatype",
        )
    elif datatype not in DATATYPES:
        why = " (a boolean is not a feature value)" if datatype == "BOOL" else ""
        problems.add(
            "unsupported_datatype",
            f"{label}: datatype {datatype!r} is not supported{why}; "
            f"use BYTES or one of {', '.join(sorted(NUMERIC_TYPES))}",
            f"{where}.datatype",
        )
    parameters = raw.get("parameters")
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        problems.add(
            "invalid_tensor",
            f"{label}: binary tensor data is not supported; send the values in 'data' "
            "(tritonclient: set_data_from_numpy(..., binary_data=False))",
            f"{where}.parameters",
        )
    if not isinstance(data, list):
        problems.add(
            "invalid_tensor",
            f"{label}: 'data' must be a list of values, got {describe(data)}",
            f"{where}.data",
        )
    if len(problems.problems) > before:
        return None
    assert isinstance(shape, list) and isinstance(data, list) and isinstance(datatype, str)
    flat = _flatten(data)
    if len(flat) != math.prod(shape):
        problems.add(
            "invalid_tensor",
            f"{label}: shape {shape} holds {math.prod(shape)} values, 'data' has {len(flat)}",
            f"{where}.data",
        )
        return None
    return _Tensor(name, tuple(shape), datatype, flat, where)


def _check_elements(tensor: _Tensor, width: int, names: Sequence[str], problems: _Problems) -> None:
    """Each value of the tensor is of its datatype's JSON type (null passes: the schema's
    missing-value policy decides). `names` are the features of its columns, for the message."""
    numeric = tensor.datatype != BYTES
    for k, value in enumerate(tensor.data):
        if value is None:
            continue
        if numeric:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            row, column = divmod(k, width)
            feature = names[column]
            takes = "numbers" if numeric else "strings"
            problems.add(
                "wrong_type",
                f"row {row}: {feature!r} (input {tensor.name!r}, datatype {tensor.datatype}) "
                f"takes {takes}, got {describe(value)}",
                feature,
                row,
            )


def _rows_of_matrix(tensor: _Tensor, schema: Schema, problems: _Problems) -> list[list[Any]]:
    names = schema.names
    width = len(names)
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        problems.add(
            "invalid_tensor",
            f"input {tensor.name!r} has shape {list(tensor.shape)}: one tensor takes shape "
            f"[N, {width}], its columns the features {', '.join(names)} in this order "
            "(or send one tensor per feature, named by the feature)",
            f"{tensor.where}.shape",
        )
        return []
    _check_elements(tensor, width, names, problems)
    data = tensor.data
    return [data[r * width : (r + 1) * width] for r in range(tensor.shape[0])]


def _rows_of_features(
    tensors: list[_Tensor], schema: Schema, problems: _Problems
) -> list[list[Any]]:
    known = set(schema.names)
    by_name: dict[str, _Tensor] = {}
    for t in tensors:
        if t.name not in known:
            problems.add(
                "extra_feature",
                f"input {t.name!r} is not a feature of this model (its features: "
                f"{', '.join(schema.names)}); send one tensor per feature, or one tensor "
                "of shape [N, features]",
                t.name,
            )
        elif t.name in by_name:
            problems.add("invalid_tensor", f"input {t.name!r} appears twice", t.name)
        elif len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
            by_name[t.name] = t
        else:
            problems.add(
                "invalid_tensor",
                f"input {t.name!r} has shape {list(t.shape)}: a feature's tensor takes "
                "shape [N] or [N, 1]",
                f"{t.where}.shape",
            )
    for f in schema.features:
        if f.name not in by_name and not any(t.name == f.name for t in tensors):
            problems.add(
                "missing_feature", f"feature {f.name!r} is missing: no input named so", f.name
            )
    lengths = {t.shape[0] for t in by_name.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{t.name!r}: {t.shape[0]}" for t in by_name.values())
        problems.add(
            "invalid_tensor",
            f"the inputs hold different numbers of rows ({sizes})",
            "inputs",
        )
    for t in by_name.values():
        _check_elements(t, 1, [t.name], problems)
    problems.raise_any()
    columns = [by_name[name].data for name in schema.names]
    return [list(row) for row in zip(*columns, strict=True)]


def _outputs(raw: Any, available: Sequence[str], problems: _Problems) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.add("invalid_body", f"'outputs' must be a list, got {describe(raw)}", "outputs")
        return None
    names: list[str] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in available:
            problems.add(
                "invalid_tensor",
                f"outputs[{i}]: no output {name!r}; this model has {', '.join(available)}",
                f"outputs[{i}].name",
            )
        elif name not in names:
            names.append(name)
    return tuple(names)


def parse_request(body: Any, schema: Schema, available: Sequence[str]) -> InferRequest:
    """The rows of an inference request in schema order, for `schema.validate_rows`; Rejected
    (400) naming the input and field when a tensor or the body is not the protocol's."""
    problems = _Problems()
    if not isinstance(body, dict):
        problems.add(
            "invalid_body",
            f"the body must be an object with an 'inputs' list, got {describe(body)}",
            "inputs",
        )
        problems.raise_any()
    assert isinstance(body, dict)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.add("invalid_body", f"'id' must be a string, got {describe(request_id)}", "id")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        problems.add(
            "invalid_body",
            f"'parameters' must be an object, got {describe(parameters)}",
            "parameters",
        )
    outputs = _outputs(body.get("outputs"), available, problems)
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list):
        problems.add(
            "invalid_body",
            "the body must be an object with an 'inputs' list, got "
            f"{describe(raw_inputs)} for 'inputs'",
            "inputs",
        )
        problems.raise_any()
    assert isinstance(raw_inputs, list)
    if not raw_inputs:
        problems.add("empty_batch", "'inputs' is empty", "inputs")
    tensors = [t for i, raw in enumerate(raw_inputs) if (t := _tensor(i, raw, problems))]
    problems.raise_any()
    names = set(schema.names)
    if len(tensors) == 1 and tensors[0].name not in names:
        rows = _rows_of_matrix(tensors[0], schema, problems)
    else:
        rows = _rows_of_features(tensors, schema, problems)
    problems.raise_any()
    return InferRequest(rows, request_id if isinstance(request_id, str) else None, outputs)


def response(
    request: InferRequest,
    *,
    model: str,
    version: str,
    request_id: str | None,
    predictions: list[Any],
    probabilities: list[list[float]] | None,
    classes: Sequence[str],
    task: str,
) -> dict[str, Any]:
    """The protocol's inference response for what the runtime answered."""
    n = len(predictions)
    outputs: list[dict[str, Any]] = []
    wanted = request.outputs
    if wanted is None or PREDICT in wanted:
        if task == "classification":
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": BYTES,
                    "shape": [n],
                    "data": [str(p) for p in predictions],
                }
            )
        else:
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": "FP64",
                    "shape": [n],
                    "data": [float(p) for p in predictions],
                }
            )
    if probabilities is not None and (wanted is None or PROBA in wanted):
        outputs.append(
            {
                "name": PROBA,
                "datatype": "FP64",
                "shape": [n, len(classes)],
                "data": [p for row in probabilities for p in row],
                "parameters": {"classes": json.dumps(list(classes))},
            }
        )
    out: dict[str, Any] = {"model_name": model, "model_version": version}
    answer_id = request.id if request.id is not None else request_id
    if answer_id is not None:
        out["id"] = answer_id
    if request_id is not None:
        out["parameters"] = {"request_id": request_id}
    out["outputs"] = outputs
    return out
