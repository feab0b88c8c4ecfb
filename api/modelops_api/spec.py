"""The Model's spec as typed, frozen objects: the single source of the modelops API.

Every field, its type, its default, its bounds and its description are declared here once. The
CRDs in `crds/` (and the chart's copies) are generated from these classes (`modelops_api.crd`), the
field tables in docs/api.md too (`modelops_api.docs`), and tests prove the committed files equal
what the classes generate. The operator parses each Model's spec into a `ModelSpec`; the training
runtime parses its `spec.training` into a `TrainingSpec`, so both read the same defaults.

Rules the API server cannot check by a schema are CEL rules (`x-kubernetes-validations` in the
classes' JSON schema) and, equally, pydantic validators: the API server rejects a manifest that
breaks them, and a spec that reaches a runtime without the API server (a file written by hand) is
rejected the same way.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    PlainValidator,
    Strict,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic.alias_generators import to_camel

# Go-style durations as the CRD accepts them: 30s, 1m30s, 2h, 500ms.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
# A number as the API server takes one: an int or a float, never a bool or numeric text, and finite
# (JSON cannot carry inf or NaN, but a hand-written YAML file can: `.inf`).
Number = Annotated[float, Strict(), AllowInfNan(False)]
Task = Literal["classification", "regression"]
# The metrics training measures for each task, which gates may name.
TASK_METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "f1_macro", "roc_auc"),
    "regression": ("r2", "mae", "rmse"),
}
GATE_METRICS = (*TASK_METRICS["classification"], *TASK_METRICS["regression"])
# Gates on these metrics are maxima (lower is better); gates on every other metric are minima.
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
# The values a gate's threshold can take (accuracy 90 is a typo for 0.9, not a gate never passed).
GATE_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "f1_macro": (0.0, 1.0),
    "roc_auc": (0.0, 1.0),
    "r2": (float("-inf"), 1.0),
    "mae": (0.0, float("inf")),
    "rmse": (0.0, float("inf")),
}


def seconds(duration: str) -> float:
    """Seconds in a duration such as `90s`, `1m30s` or `2h` (the CRD's pattern)."""
    text = duration.strip()
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {duration!r} (use e.g. 30s, 1m, 1h30m)")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


T = TypeVar("T", bound=BaseModel)


class SpecError(ValueError):
    """A spec breaks the API; the message names every offending field by its path."""


_FIELD_FIRST = re.compile(
    r"^(?:Value error, )?(?P<field>[A-Za-z_][\w]*(?:\.[\w]+)*): (?P<text>.*)$", re.S
)


def problems(error: ValidationError, prefix: str) -> list[str]:
    """`path: message` per error, the path as kubectl prints it (`spec.serving.canary.steps[1]`).

    A validator of a whole object names its field first (`features: lists the target`), so the
    field joins the path."""
    found = []
    for item in error.errors():
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        text = str(item["msg"])
        match = _FIELD_FIRST.match(text)
        if match is not None and item["type"] == "value_error":
            path, text = f"{path}.{match['field']}", match["text"]
        found.append(f"{path}: {text.removeprefix('Value error, ')}")
    return found


def parse(cls: type[T], raw: object, prefix: str) -> T:
    """`raw` (a manifest's part at `prefix`) as `cls`, or a SpecError naming every problem."""
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise SpecError("; ".join(problems(error, prefix))) from None


def rules(*pairs: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """CEL rules for a class's schema: (rule, message[, fieldPath])."""
    validations = []
    for pair in pairs:
        rule: dict[str, str] = {"rule": pair[0], "message": pair[1]}
        if len(pair) == 3:
            rule["fieldPath"] = pair[2]
        validations.append(rule)
    return {"x-kubernetes-validations": validations}


def _a_second_or_more(duration: str) -> str:
    if seconds(duration) < 1:
        raise ValueError("must be at least 1s")
    return duration


# How often something is analysed: never below a second (0s would analyse without end).
Interval = Annotated[
    Duration,
    Field(json_schema_extra=rules(("duration(self) >= duration('1s')", "must be at least 1s"))),
    AfterValidator(_a_second_or_more),
]


def _a_day_or_less(duration: str) -> str:
    if seconds(duration) > 86400:
        raise ValueError("must be at most 24h")
    return duration


# How long a run may take: from a second to a day.
RunTime = Annotated[
    Duration,
    Field(
        json_schema_extra=rules(
            ("duration(self) >= duration('1s')", "must be at least 1s"),
            ("duration(self) <= duration('24h')", "must be at most 24h"),
        )
    ),
    AfterValidator(_a_second_or_more),
    AfterValidator(_a_day_or_less),
]


class Spec(BaseModel):
    """A part of the spec: camelCase on the wire, frozen, unknown fields rejected, a null field
    absent (the API server prunes nulls before defaulting, so a hand-written file reads alike).
    Each class builds its validator when first used: a training reads its own part only, and
    building every class's on import cost it tens of milliseconds."""

    model_config = ConfigDict(
        defer_build=True,
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    """Each column once: the CRD declares these lists sets, and the API server rejects a repeat."""
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"lists the column {name!r} twice")
    return names


Names = Annotated[
    tuple[Annotated[str, Field(min_length=1)], ...],
    Field(max_length=1000, json_schema_extra={"x-kubernetes-list-type": "set"}),
    AfterValidator(_unique),
]


class HttpParams(Spec):
    timeout_seconds: Number = Field(
        30.0, ge=0.1, le=3600, description="per connect and per read of an http(s) or s3 source"
    )
    # A file source is read up to the same limit (its size is known before it is read).
    max_bytes: StrictInt = Field(
        256 * 1024 * 1024,
        ge=1,
        le=64 * 1024**3,
        description="the most bytes read from an http(s), file or s3 source",
    )


def _listed(names: tuple[str, ...] | list[str], last: str) -> str:
    """`a, b and c` (or `a, b or c`)."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


def _by_range(ranges: dict[str, tuple[float, float]]) -> dict[tuple[float, float], list[str]]:
    """The metrics that share each range, in the order first named."""
    grouped: dict[tuple[float, float], list[str]] = {}
    for name, bounds in ranges.items():
        grouped.setdefault(bounds, []).append(name)
    return grouped


def _bounds(low: float, high: float) -> str:
    """What a value within [low, high] must be, in words (either end may be infinite)."""
    if math.isinf(low):
        return f"be at most {high:g}"
    if math.isinf(high):
        return f"be at least {low:g}"
    return f"lie in [{low:g}, {high:g}]"


def _cel_bounds(value: str, low: float, high: float) -> str:
    """A CEL test that `value` lies within [low, high] (either end may be infinite)."""
    tests = [f"{value} >= {low!r}"] if not math.isinf(low) else []
    tests += [f"{value} <= {high!r}"] if not math.isinf(high) else []
    return " && ".join(tests)


# The datasets scikit-learn ships that `builtin:<name>` loads (modelops_training.sources), and the
# task each one is for.
BUILTIN_DATASETS: dict[str, Task] = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}


def _cel_source_is(uri: str, task: Task) -> str:
    """A CEL test that the source `uri` names is a builtin or synthetic dataset of `task`."""
    builtins = [f"builtin:{name}" for name, of in BUILTIN_DATASETS.items() if of == task]
    return f"({uri} in {builtins} || {uri}.startsWith('synthetic:{task}'))"


def _sources_of(task: Task) -> str:
    builtins = [f"builtin:{name}" for name, of in BUILTIN_DATASETS.items() if of == task]
    return _listed((*builtins, f"synthetic:{task}"), "and")


class ProductionSpec(Spec):
    """The Model's labelled production rows, added to its dataset (docs/training.md)."""

    window: Duration = Field(
        "168h", description="rows recorded this long ago or later (Go duration: 168h = 7 days)"
    )
    min_rows: StrictInt = Field(
        50,
        ge=0,
        description="fewer labelled rows in the window fail the training; 0 takes what is there "
        "(none for a new Model's first training)",
    )

    @property
    def window_seconds(self) -> float:
        return seconds(self.window)


class DatasetSpec(Spec):
    uri: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^(builtin:[a-z_]+|synthetic:(classification|regression)(\?.*)?|file:///.+|https?://.+"
        r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^?#]+)$",
        description=f"builtin:<{'|'.join(BUILTIN_DATASETS)}>, "
        "synthetic:classification|regression[?rows=..&features=..&seed=..&shift=..], "
        "file:///path.csv, http(s)://... or s3://bucket/key.csv",
        json_schema_extra=rules(
            (
                "!self.startsWith('builtin:') "
                f"|| self in {[f'builtin:{name}' for name in BUILTIN_DATASETS]}",
                f"the builtin datasets are {_listed(tuple(BUILTIN_DATASETS), 'and')}",
            ),
        ),
    )
    format: Literal["csv", "parquet"] = Field("csv", description="of a file, http(s) or s3 source")
    target: str = Field(min_length=1, max_length=253, description="the column to predict")
    features: Names | None = Field(
        None, description="the columns to learn from; default: every column but the target"
    )
    categorical: Names | None = Field(
        None, description="columns to one-hot encode; default: the non-numeric ones"
    )
    task: Task | None = Field(
        None,
        description="default: the estimator's (classifier or regressor); when given, it must "
        "agree with the estimator and with a builtin or synthetic source",
    )
    params: HttpParams | None = Field(None, description="for http(s), file and s3 sources only")
    secret_name: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="s3 sources only: a Secret in the Model's namespace whose AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION) read the dataset; "
        "given to the training pod alone, never read by the operator; default: the artifact "
        "store's credentials",
    )
    production: ProductionSpec | None = Field(
        None,
        description="also learn from the rows serving recorded and feedback labelled "
        "(spec.serving.recording); unlabelled rows are never used",
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.features) || !(self.target in self.features)",
                "the target must not be listed among the features",
                ".features",
            ),
            (
                "!has(self.categorical) || !(self.target in self.categorical)",
                "the target must not be listed among the categorical columns",
                ".categorical",
            ),
            (
                "!has(self.params) || self.uri.startsWith('http') || self.uri.startsWith('file:') "
                "|| self.uri.startsWith('s3:')",
                "dataset.params applies to http(s), file and s3 sources only; others take theirs "
                "from the URI",
                ".params",
            ),
            (
                "!has(self.secretName) || self.uri.startsWith('s3:')",
                "dataset.secretName applies to s3 sources only",
                ".secretName",
            ),
            *(
                (
                    f"!has(self.task) || self.task == '{task}' "
                    f"|| !{_cel_source_is('self.uri', task)}",
                    f"dataset.task contradicts the source: {_sources_of(task)} are {task} data",
                    ".task",
                )
                for task in TASK_METRICS
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        scheme, _, name = self.uri.partition(":")
        if scheme == "builtin" and name not in BUILTIN_DATASETS:
            raise ValueError(
                f"uri: builtin:{name} is not a builtin dataset; the builtin datasets are "
                f"{_listed(tuple(BUILTIN_DATASETS), 'and')}"
            )
        if self.features is not None:
            if not self.features:
                raise ValueError("features: is empty; omit it to use every column")
            if self.target in self.features:
                raise ValueError(f"features: lists the target {self.target!r}")
        if self.categorical is not None:
            if self.target in self.categorical:
                raise ValueError(f"categorical: lists the target {self.target!r}")
            outside = [n for n in self.categorical if self.features and n not in self.features]
            if outside:
                raise ValueError(f"categorical: names {outside[0]!r}, which is not in features")
        if self.task and self.source_task and self.task != self.source_task:
            raise ValueError(f"task: {self.uri} is {self.source_task} data, not {self.task}")
        if self.params is not None and not self.uri.startswith(("http", "file:", "s3:")):
            raise ValueError(
                "params: applies to http(s), file and s3 sources only; the others take theirs "
                "from the URI"
            )
        if self.secret_name is not None and not self.uri.startswith("s3:"):
            raise ValueError("secretName: applies to s3 sources only")
        return self

    @property
    def source_task(self) -> Task | None:
        """The task a builtin or synthetic source is for; None for data from a file or URL."""
        scheme, _, rest = self.uri.partition(":")
        if scheme == "builtin":
            return BUILTIN_DATASETS.get(rest)
        for task in TASK_METRICS:
            if scheme == "synthetic" and rest.partition("?")[0] == task:
                return task
        return None

    @property
    def known_task(self) -> Task | None:
        """The task the spec tells by itself (dataset.task or its source's); None when only the
        estimator tells it, which the training runtime checks."""
        return self.task or self.source_task


class CleaningSpec(Spec):
    drop_duplicates: StrictBool = Field(True, description="drop repeated rows before the split")
    missing: Literal["impute-median", "impute-mean", "impute-most-frequent", "drop"] = Field(
        "impute-median", description="what to do with missing values"
    )


class SelectionSpec(Spec):
    method: Literal["none", "kbest", "variance"] = Field("none", description="feature selection")
    k: StrictInt | None = Field(None, ge=1, description="features kept by kbest (required there)")
    threshold: Number | None = Field(None, ge=0, description="variance threshold; default 0")

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.method) || self.method != 'kbest' || has(self.k)",
                "selection.k is required when selection.method is kbest",
                ".k",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> SelectionSpec:
        if self.method == "kbest" and self.k is None:
            raise ValueError("k: is required when method is kbest")
        if self.method != "kbest" and self.k is not None:
            raise ValueError("k: applies to method kbest only")
        if self.method != "variance" and self.threshold is not None:
            raise ValueError("threshold: applies to method variance only")
        return self


class AugmentationSpec(Spec):
    oversample_minority: StrictBool = Field(
        False, description="oversample the minority classes of the training split"
    )


class PipelineSpec(Spec):
    cleaning: CleaningSpec = Field(default_factory=CleaningSpec)
    scaling: Literal["standard", "minmax", "robust", "none"] = Field(
        "standard", description="of the numeric features"
    )
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)


class EstimatorSpec(Spec):
    class_path: str = Field(
        alias="class",
        pattern=r"^sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        description="a scikit-learn estimator class path from the allow-list, "
        "e.g. sklearn.ensemble.RandomForestClassifier",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="checked by constructing the estimator"
    )


class ValidationSpec(Spec):
    test_size: Number = Field(0.2, ge=0.05, le=0.5, description="share of rows held out")
    random_state: StrictInt = Field(42, ge=0, description="seed of the split and the estimator")
    gates: dict[str, Number] = Field(
        default_factory=dict,
        max_length=6,
        description="metric name -> threshold: a minimum for accuracy, f1_macro, roc_auc, r2; "
        "a maximum for mae, rmse; only metrics of the Model's task",
        json_schema_extra=rules(
            (
                f"self.all(k, k in {list(GATE_METRICS)})",
                f"gates may name {_listed(GATE_METRICS, 'or')}",
            ),
            *(
                (
                    f"self.all(k, !(k in {names}) || ({_cel_bounds('self[k]', low, high)}))",
                    f"{_listed(names, 'and')} gates must {_bounds(low, high)}",
                )
                for (low, high), names in _by_range(GATE_RANGES).items()
            ),
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ValidationSpec:
        for name, value in self.gates.items():
            if name not in GATE_RANGES:
                raise ValueError(f"gates.{name}: gates may name {_listed(GATE_METRICS, 'or')}")
            low, high = GATE_RANGES[name]
            if not low <= value <= high:
                raise ValueError(f"gates.{name}: must {_bounds(low, high)}, got {value:g}")
        return self


# A resource quantity as Kubernetes writes one (500m, 2, 1.5Gi, 1e3), never negative: Kubernetes'
# own quantity pattern without its minus sign.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)
_QUANTITY_PARTS = re.compile(r"^\+?([0-9.]+)(.*)$")  # of a quantity: its number, its suffix
_QUANTITY_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal("1e3"),
    "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip


def quantity(value: object) -> Decimal:
    """The amount in a Kubernetes resource quantity (`500m`, `2`, `1Gi`, `1e3`), which may not be
    negative; a ValueError for anything Kubernetes would not parse as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return Decimal(value)
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a quantity (e.g. 500m, 2, 1.5Gi)")
    number, suffix = _QUANTITY_PARTS.findall(value)[0]
    if suffix and suffix not in _QUANTITY_SUFFIX:  # an exponent: 1e3, 2E-3
        return Decimal(number + suffix)
    return Decimal(number) * _QUANTITY_SUFFIX.get(suffix, Decimal(1))


def _a_quantity(value: object) -> object:
    if isinstance(value, str) and len(value) > 64:
        raise ValueError("a quantity has at most 64 characters")
    quantity(value)
    return value


# An int or a string, as Kubernetes' own quantity schema (x-kubernetes-int-or-string) takes it.
Quantity = Annotated[
    int | str,
    PlainValidator(_a_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "maxLength": 64,
        }
    ),
]
Quantities = Annotated[dict[str, Quantity], Field(max_length=16)]


class ResourceRequirements(Spec):
    """A container's resources as the CRD checks them; the spec keeps the mapping as written."""

    limits: Quantities | None = Field(
        None,
        description="the most of each resource the container may use, as Kubernetes quantities "
        "(cpu: 500m, memory: 1Gi)",
    )
    requests: Quantities | None = Field(
        None, description="what the scheduler reserves for the container; each at most its limit"
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || !isQuantity(string(self.requests[k])) "
                "|| !isQuantity(string(self.limits[k])) "
                "|| quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) "
                "<= 0)",
                "a resource's request must not exceed its limit",
                ".requests",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> ResourceRequirements:
        for name, request in (self.requests or {}).items():
            limit = (self.limits or {}).get(name)
            if limit is not None and quantity(request) > quantity(limit):
                raise ValueError(f"requests.{name}: {request} exceeds its limit {limit}")
        return self


def _as_written(value: Any, check: ValidatorFunctionWrapHandler) -> Any:
    check(value)
    return value


# A container's ResourceRequirements: checked as the class above (whose schema the CRD has), and
# kept as the mapping the user wrote, which goes into the container as it is.
Resources = Annotated[
    dict[str, Any],
    GetPydanticSchema(lambda _, handler: handler(ResourceRequirements)),
    WrapValidator(_as_written),
]


# A cron expression as the operator's scheduler (croniter) reads one: five fields (minute, hour,
# day of month, month, day of week), each a list of `*`, a value or a range a-b, each with an
# optional step /n; months and days may be named (jan, mon). Values outside a field's range (minute
# 60, hour 24) are refused here rather than found by the operator at the first fire.
_CRON_FIELDS = (
    "[0-5]?[0-9]",  # minute 0-59
    "[01]?[0-9]|2[0-3]",  # hour 0-23
    "0?[1-9]|[12][0-9]|3[01]",  # day of month 1-31
    "0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",  # month 1-12
    "[0-7]|(?i:sun|mon|tue|wed|thu|fri|sat)",  # day of week 0-7 (0 and 7: Sunday)
)


def _cron_field(values: str) -> str:
    item = f"(?:\\*|(?:{values})(?:-(?:{values}))?)(?:/[1-9][0-9]*)?"
    return f"{item}(?:,{item})*"


SCHEDULE_PATTERN = (
    "^(?:@(?:hourly|daily|weekly|monthly|yearly)|"
    + "\\s+".join(_cron_field(values) for values in _CRON_FIELDS)
    + ")$"
)
_SCHEDULE = re.compile(SCHEDULE_PATTERN)
_SCHEDULE_FORM = (
    "must be a cron expression (minute hour day-of-month month day-of-week, each field *, a "
    "value or a range a-b, with an optional step /n, or a list of these) or @hourly, @daily, "
    "@weekly, @monthly or @yearly"
)


def _a_schedule(expression: str) -> str:
    if not _SCHEDULE.fullmatch(expression):
        raise ValueError(_SCHEDULE_FORM)
    return expression


# A CEL rule rather than a pattern, so that the API server's message says what a schedule is
# rather than quoting the regular expression.
Schedule = Annotated[
    str,
    Field(
        max_length=256,
        json_schema_extra=rules((f"self.matches(r'{SCHEDULE_PATTERN}')", _SCHEDULE_FORM)),
    ),
    AfterValidator(_a_schedule),
]


def _cel_task_is(task: Task) -> str:
    """A CEL test, on a training spec, that the spec tells by itself that its task is `task`."""
    source = _cel_source_is("self.dataset.uri", task)
    return f"(has(self.dataset.task) ? self.dataset.task == '{task}' : {source})"


class TrainingSpec(Spec):
    dataset: DatasetSpec
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    estimator: EstimatorSpec
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    schedule: Schedule | None = Field(None, description="when to retrain periodically, in UTC")
    resources: Resources | None = Field(
        None, description="limits and requests of the training container"
    )
    deadline: RunTime | None = Field(
        None,
        description="how long the training Job may run before it is stopped (DeadlineExceeded); "
        "default: the operator's MODELOPS_TRAINING_DEADLINE_SECONDS",
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            *(
                (
                    "!has(self.validation) || !has(self.validation.gates) "
                    f"|| !{_cel_task_is(task)} "
                    f"|| self.validation.gates.all(k, k in {list(metrics)})",
                    f"a {task} Model's gates may name {_listed(metrics, 'or')} (its task is "
                    "dataset.task, or its builtin or synthetic source's)",
                    ".validation.gates",
                )
                for task, metrics in TASK_METRICS.items()
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        task = self.dataset.known_task
        if task is None:
            return self  # the estimator tells the task; the training runtime checks the gates
        for name in self.validation.gates:
            if name not in TASK_METRICS[task]:
                raise ValueError(
                    f"validation.gates.{name}: is not a {task} metric; a {task} Model's gates "
                    f"may name {_listed(TASK_METRICS[task], 'or')}"
                )
        return self


class AutoscalingSpec(Spec):
    min_replicas: StrictInt = Field(1, ge=1, le=1000, description="fewest serving pods")
    max_replicas: StrictInt = Field(ge=1, le=1000, description="most serving pods")
    target_cpu_utilization: StrictInt = Field(
        70, ge=1, le=100, alias="targetCPUUtilization", description="percent of the CPU request"
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                ".minReplicas",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas: must not exceed maxReplicas")
        return self


CanaryStep = Annotated[StrictInt, Field(ge=1, le=99)]
DEFAULT_CANARY_STEPS = (10, 50)
# The most pods a canary runs. At a step of w percent beside n stable pods the canary gets
# n * w / (100 - w) (modelops_operator.canary.split), so steps near 100 would ask for many times the
# stable count: `replicas: 100, steps: [99]` is 9,900 pods. With the Gateway API router the weights
# do not depend on the pods, and the canary runs n * w / 100 (rounded up, at least one).
MAX_CANARY_REPLICAS = 100


def canary_pods(stable: int, step: int, gateway: bool) -> float:
    """The canary pods a step asks for before rounding (the bound MAX_CANARY_REPLICAS caps)."""
    return stable * step / (100 if gateway else 100 - step)


class CanarySpec(Spec):
    steps: tuple[CanaryStep, ...] = Field(
        DEFAULT_CANARY_STEPS,
        min_length=1,
        max_length=10,
        description="traffic shares in percent the canary goes through; at a step of w beside n "
        "stable pods (replicas, or autoscaling.minReplicas) the canary runs n*w/(100-w) pods, "
        f"or max(1, ceil(n*w/100)) with traffic.gateway, at most {MAX_CANARY_REPLICAS}",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            **rules(("self.isSorted()", "canary.steps must be strictly increasing")),
        },
    )
    interval: Interval = Field("1m", description="between two analyses")
    threshold: StrictInt = Field(2, ge=1, le=100, description="failed checks that roll back")
    progress_deadline: Interval = Field(
        "15m", description="longest time without a step forward; at least one interval"
    )
    on_deadline: Literal["rollback", "hold"] = Field(
        "rollback", description="what a canary that cannot conclude within progressDeadline does"
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.progressDeadline) || !has(self.interval) "
                "|| duration(self.progressDeadline) >= duration(self.interval)",
                "canary.progressDeadline must be at least one canary.interval",
                ".progressDeadline",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> CanarySpec:
        if any(a >= b for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps: must be strictly increasing")
        if seconds(self.progress_deadline) < seconds(self.interval):
            raise ValueError("progressDeadline: must be at least one interval")
        return self

    @property
    def interval_seconds(self) -> float:
        return seconds(self.interval)

    @property
    def progress_deadline_seconds(self) -> float:
        return seconds(self.progress_deadline)


class RecordingSpec(Spec):
    """Serving records the rows it is asked to predict and the ground truth /feedback sends for
    them in the artifact store, for training (docs/serving.md, "Production data"). Opt-in: the
    inputs a model sees can be sensitive."""

    retention: Duration = Field(
        "168h", description="recorded rows and labels older than this are deleted (168h = 7 days)"
    )

    @property
    def retention_seconds(self) -> float:
        return seconds(self.retention)


# A DNS-1123 subdomain (a Kubernetes object name, a hostname) and label (a namespace name).
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Subdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_1123_SUBDOMAIN)]


class GatewayRef(Spec):
    """The Gateway (gateway.networking.k8s.io/v1) the Model's HTTPRoute attaches to."""

    name: Subdomain = Field(description="the Gateway's name")
    namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=DNS_1123_LABEL,
        description="the Gateway's namespace; empty: the Model's",
    )
    section_name: Subdomain | None = Field(
        None, description="one listener of the Gateway; empty: every listener that admits the route"
    )


class TrafficSpec(Spec):
    """The Gateway API traffic router: the operator writes an HTTPRoute whose weighted backends
    (the stable and canary tracks' Services) give the canary exactly its step's share."""

    gateway: GatewayRef = Field(description="the Gateway that routes the Model's traffic")
    hostname: Subdomain | None = Field(
        None,
        description="the host the route answers; empty: {model}.{namespace}.modelops.local",
    )


class ServingSpec(Spec):
    replicas: StrictInt = Field(
        1, ge=1, le=100, description="of the stable Deployment, when not autoscaled"
    )
    version: str | None = Field(
        None,
        max_length=63,
        description="pin the stable version (manual rollback); "
        "empty follows the newest approved version",
    )
    resources: Resources | None = Field(
        None, description="limits and requests of each serving container"
    )
    autoscaling: AutoscalingSpec | None = Field(None, description="an HPA on the stable Deployment")
    canary: CanarySpec = Field(default_factory=CanarySpec)
    recording: RecordingSpec | None = Field(
        None, description="record production data for training; absent: nothing is recorded"
    )
    traffic: TrafficSpec | None = Field(
        None,
        description="split traffic with a Gateway API HTTPRoute, exact to the percent; absent: "
        "the Service splits it by replica ratio",
    )

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.canary) && has(self.canary.steps) ? self.canary.steps : "
                f"{list(DEFAULT_CANARY_STEPS)}).all(w, "
                "(has(self.autoscaling) ? self.autoscaling.minReplicas : self.replicas) * w "
                f"<= {MAX_CANARY_REPLICAS} * (has(self.traffic) ? 100 : 100 - w))",
                f"the canary would run more than {MAX_CANARY_REPLICAS} pods: at a step of w "
                "percent beside n stable pods (replicas, or autoscaling.minReplicas) it runs "
                "n*w/(100-w), or n*w/100 with traffic.gateway; take smaller steps or fewer "
                "replicas",
                ".canary.steps",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> ServingSpec:
        stable = self.autoscaling.min_replicas if self.autoscaling else self.replicas
        for step in self.canary.steps:
            pods = canary_pods(stable, step, self.traffic is not None)
            if pods > MAX_CANARY_REPLICAS:
                raise ValueError(
                    f"canary.steps: a step of {step} beside {stable} stable pods runs "
                    f"{pods:g} canary pods, more than "
                    f"{MAX_CANARY_REPLICAS}; take smaller steps or fewer replicas"
                )
        return self

    @property
    def gateway(self) -> bool:
        """Whether the Gateway API router splits the traffic (else the replica ratio does)."""
        return self.traffic is not None

    @property
    def pinned(self) -> str:
        return self.version or ""


class VsStable(Spec):
    """A canary's check judged against the stable track over the same window, as well as against
    its absolute threshold (docs/monitoring.md names the tests)."""

    confidence: Number = Field(
        0.95,
        ge=0.5,
        le=0.9999,
        description="fails when the canary is worse than stable at this one-sided confidence "
        "(p-value below 1 - confidence)",
    )
    min_samples: StrictInt = Field(
        200,
        ge=20,
        le=1_000_000,
        description="fewer requests (feedback items, for accuracy) on either track are "
        "inconclusive",
    )


_VS_STABLE = (
    "also judge a canary against stable over the same window; the stable version's own "
    "analysis ignores it"
)


class ErrorRateCheck(Spec):
    max: Number = Field(ge=0, le=1, description="largest share of failed requests")
    min_samples: StrictInt = Field(20, ge=1, description="fewer requests are inconclusive")
    vs_stable: VsStable | None = Field(
        None, description=f"{_VS_STABLE}: a higher error rate (two-proportion test) fails"
    )


class LatencyCheck(Spec):
    max: Number = Field(gt=0, description="largest p95 latency in seconds")
    min_samples: StrictInt = Field(20, ge=1, description="fewer requests are inconclusive")
    vs_stable: VsStable | None = Field(
        None, description=f"{_VS_STABLE}: slower requests (Mann-Whitney U on the buckets) fail"
    )


class PsiLimit(Spec):
    max: Number = Field(gt=0, le=10, description="largest population stability index of a feature")


class DriftCheck(Spec):
    psi: PsiLimit
    min_samples: StrictInt = Field(100, ge=1, description="fewer rows are inconclusive")


class AccuracyCheck(Spec):
    min: Number = Field(ge=0, le=1, description="smallest live accuracy from feedback")
    min_samples: StrictInt = Field(50, ge=1, description="fewer feedback items are inconclusive")
    vs_stable: VsStable | None = Field(
        None, description=f"{_VS_STABLE}: a lower accuracy (two-proportion test) fails"
    )


class CustomCheck(Spec):
    name: str = Field(pattern=r"^[a-z][a-zA-Z0-9_-]{0,62}$", description="the check's name")
    query: str = Field(min_length=1, description="PromQL (docs/monitoring.md names its variables)")
    min: Number | None = Field(None, description="smallest passing value")
    max: Number | None = Field(None, description="largest passing value")

    model_config = ConfigDict(
        json_schema_extra=rules(
            ("has(self.min) || has(self.max)", "a custom check needs min, max or both"),
            (
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "a custom check's min must not exceed its max",
                ".min",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> CustomCheck:
        if self.min is None and self.max is None:
            raise ValueError("min: a custom check needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min: must not exceed max")
        return self


class ChecksSpec(Spec):
    error_rate: ErrorRateCheck | None = None
    latency_p95_seconds: LatencyCheck | None = None
    drift: DriftCheck | None = None
    accuracy: AccuracyCheck | None = None
    custom: tuple[CustomCheck, ...] = Field(
        (),
        max_length=20,
        description="PromQL checks, by name",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    def wire(self) -> dict[str, Any]:
        """The checks as the manifest spells them (the analysis engine reads that shape)."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            exclude=None if self.custom else {"custom"},
        )


class MonitoringSpec(Spec):
    interval: Interval = Field("1m", description="between two analyses of the stable version")
    consecutive: StrictInt = Field(
        2,
        ge=1,
        le=100,
        description="intervals a drift or accuracy breach must last before it triggers a retrain",
    )
    cooldown: Duration = Field("1h", description="shortest time between two retrains")
    retrain_on: tuple[Literal["drift", "accuracy"], ...] = Field(
        (),
        description="breaches that retrain; each needs its check",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    checks: ChecksSpec = Field(default_factory=ChecksSpec)

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.retrainOn) || !('drift' in self.retrainOn) "
                "|| (has(self.checks) && has(self.checks.drift))",
                "retrainOn drift needs monitoring.checks.drift",
                ".retrainOn",
            ),
            (
                "!has(self.retrainOn) || !('accuracy' in self.retrainOn) "
                "|| (has(self.checks) && has(self.checks.accuracy))",
                "retrainOn accuracy needs monitoring.checks.accuracy",
                ".retrainOn",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> MonitoringSpec:
        for check in self.retrain_on:
            if getattr(self.checks, check) is None:
                raise ValueError(f"retrainOn: {check} needs monitoring.checks.{check}")
        return self

    @property
    def interval_seconds(self) -> float:
        return seconds(self.interval)

    @property
    def cooldown_seconds(self) -> float:
        return seconds(self.cooldown)


class ModelSpec(Spec):
    training: TrainingSpec
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)


class ModelVersionSpec(Spec):
    model: str = Field(min_length=1, max_length=63, description="the Model's name")
    reason: Literal["initial", "spec-change", "drift", "accuracy", "schedule", "manual"] = Field(
        description="why it was trained"
    )
    spec_hash: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256: of the canonical JSON of the training spec",
    )
    training: dict[str, Any] = Field(
        description="the Model's spec.training when this version was created"
    )
