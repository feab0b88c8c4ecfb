"""Pure parts of the serving runtime: settings, row validation, bucket bookkeeping, feedback."""

from __future__ import annotations

import base64
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from prometheus_client import Histogram

from modelops_serving.artifact import ArtifactError, archive_path, check_home_apart
from modelops_serving.config import ConfigError, load_settings
from modelops_serving.credentials import Credentials, CredentialsError
from modelops_serving.feedback import Claims, parse_items, score
from modelops_serving.metrics import (
    Recorder,
    WriteBehind,
    _Buckets,
    bucket_counts,
    check_edges,
    error_edges,
)
from modelops_serving.schema import ContractError, Rejected, Schema, validate_rows
from modelops_serving.scoring import Scorer

pytestmark = pytest.mark.unit

SCHEMA = Schema.from_metadata(
    [
        {"name": "size", "type": "numeric"},
        {"name": "city", "type": "categorical", "categories": ["berlin", "rome"]},
    ]
)


def problems(rows: Any, **kwargs: Any) -> list[tuple[Any, Any, str]]:
    with pytest.raises(Rejected) as caught:
        validate_rows(SCHEMA, rows, max_batch=kwargs.pop("max_batch", 10), **kwargs)
    return [(p.row, p.field, p.reason) for p in caught.value.problems]


def test_settings_defaults_and_errors() -> None:
    s = load_settings({"MODELOPS_ARTIFACT": "file:///m/a.bentomodel"})
    assert (s.track, s.host, s.workers, s.monitoring, s.max_batch, s.nan_policy) == (
        "stable",
        "0.0.0.0",
        1,
        True,
        1000,
        "reject",
    )
    assert load_settings({"MODELOPS_MONITORING": "off"}).monitoring is False
    assert s.metrics_flush_seconds == 1.0
    assert load_settings({"MODELOPS_METRICS_FLUSH_SECONDS": "0"}).metrics_flush_seconds == 0
    for env, name in [
        ({"MODELOPS_TRACK": "blue"}, "MODELOPS_TRACK"),
        ({"MODELOPS_WORKERS": "0"}, "MODELOPS_WORKERS"),
        ({"MODELOPS_MAX_BATCH": "ten"}, "MODELOPS_MAX_BATCH"),
        ({"MODELOPS_MONITORING": "maybe"}, "MODELOPS_MONITORING"),
        ({"MODELOPS_NAN_POLICY": "impute"}, "MODELOPS_NAN_POLICY"),
        ({"MODELOPS_METRICS_FLUSH_SECONDS": "-1"}, "MODELOPS_METRICS_FLUSH_SECONDS"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load_settings(env)


def test_rows_become_typed_columns_in_schema_order() -> None:
    size, city = validate_rows(
        SCHEMA, [{"city": " rome ", "size": 3}, [4.5, "paris"], [1, 7], [2, 7.0]], max_batch=10
    )
    assert size.dtype == np.float64 and size.tolist() == [3.0, 4.5, 1.0, 2.0]
    assert city == ["rome", "paris", "7", "7"]


def test_each_bad_row_is_named_by_index_and_field() -> None:
    assert problems([[1.0, "rome"], {"size": 1.0}]) == [(1, "city", "missing_feature")]
    assert problems([{"size": 1.0, "city": "rome", "x": 1}]) == [(0, "x", "extra_feature")]
    assert problems([[1.0, "rome", 3]]) == [(0, "[2]", "extra_feature")]
    assert problems([["1.0", "rome"]]) == [(0, "size", "wrong_type")]
    assert problems([[False, "rome"]]) == [(0, "size", "wrong_type")]
    assert problems([[math.inf, "rome"]]) == [(0, "size", "wrong_type")]
    assert problems([[10**400, "rome"]]) == [(0, "size", "wrong_type")]
    assert problems([[1.0, ["rome"]]]) == [(0, "city", "wrong_type")]
    assert problems([[None, "rome"]]) == [(0, "size", "missing_value")]
    assert problems([[math.nan, "rome"]]) == [(0, "size", "missing_value")]
    assert problems([[1.0, None]]) == [(0, "city", "missing_value")]
    assert problems([3]) == [(0, None, "invalid_row")]
    assert problems([]) == [(None, "rows", "empty_batch")]
    assert problems({"size": 1}) == [(None, "rows", "invalid_body")]
    assert problems([[1.0, "a"]] * 3, max_batch=2) == [(None, "rows", "batch_too_large")]
    assert len(problems([["x", 1.5j]] * 30, max_batch=30)) == 20


def test_missing_values_pass_when_the_policy_allows() -> None:
    size, city = validate_rows(SCHEMA, [[None, None]], max_batch=1, allow_missing=True)
    assert math.isnan(size[0]) and city == [None]


def test_contract_errors_in_the_schema() -> None:
    for raw in ([], [{"name": "a", "type": "text"}], [{"name": "a", "type": "numeric"}] * 2):
        with pytest.raises(ContractError):
            Schema.from_metadata(raw)


def test_bucket_counts_are_right_closed() -> None:
    edges = [1.0, 2.0, 3.0]
    values = np.array([-5.0, 1.0, 1.0000001, 2.0, 2.5, 3.0, 3.5, 99.0])
    assert bucket_counts(edges, values).tolist() == [2, 2, 2, 2]


def test_batched_buckets_equal_prometheus_own_observe() -> None:
    edges = [0.5, 1.0, 2.5, 7.0]
    labels = {"model": "m", "version": "v", "track": "stable", "feature": "f"}
    values = np.random.default_rng(1).normal(2.0, 2.0, 500).round(1)
    mine = _Buckets("check_value", "doc", labels, edges)
    writes = WriteBehind(0)
    for v in values[:20]:  # single values (the bisect path) ...
        writes.add(mine.increments(np.array([v])))
    writes.add(mine.increments(values[20:30]))
    writes.add(mine.increments(values[30:]))  # ... and a large batch (the numpy path)
    assert set(values[:30]) & set(edges), "some values fall exactly on an edge"
    reference = Histogram("check_value", "doc", list(labels), buckets=edges, registry=None)
    for v in values.tolist():
        reference.labels(**labels).observe(v)

    def samples(h: Histogram) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in h.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(mine.family), samples(reference)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key]), key


class _Value:
    """Stands for a prometheus_client value: counts its writes."""

    def __init__(self) -> None:
        self.total = 0.0
        self.writes = 0

    def inc(self, amount: float) -> None:
        self.total += amount
        self.writes += 1


def test_pending_increments_are_written_once_per_value_after_the_delay() -> None:
    a, b = _Value(), _Value()
    writes = WriteBehind(0.2).start()
    for _ in range(50):  # fifty requests within the delay
        writes.add([(a, 1), (b, 2.5)])
    assert (a.writes, b.writes) == (0, 0)
    deadline = time.monotonic() + 10
    while a.writes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (a.total, b.total, a.writes, b.writes) == (50, 125.0, 1, 1)
    writes.add([(a, 1)])
    writes.flush()  # a scrape of this worker does not wait for the thread
    assert (a.total, a.writes) == (51, 2)
    time.sleep(0.4)
    assert a.writes == 2, "nothing pending, nothing written"


def test_without_a_delay_each_increment_is_written_at_once() -> None:
    a = _Value()
    writes = WriteBehind(0).start()
    writes.add([(a, 1), (a, 2)])
    assert (a.total, a.writes) == (3, 2)


def _samples(families: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families
        for metric in family.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("as_block", [True, False], ids=["block", "per-feature"])
def test_a_request_binned_as_one_block_equals_observe_per_value(as_block: bool) -> None:
    """All numeric features of a request are binned together, small and large batches alike;
    a NaN is counted as missing, and a feature without reference edges only as missing. Should
    prometheus_client's internals change, each feature is recorded on its own, alike."""
    with patch.object(_Buckets, "writable", new=property(lambda self: as_block)):
        _check_recording(as_block)


def _check_recording(as_block: bool) -> None:
    features = ["a", "b", "c", "d"]
    schema = Schema.from_metadata([{"name": f, "type": "numeric"} for f in features])
    edges = {"a": [0.5, 1.0, 2.5, 7.0], "b": [-1.0, 0.0], "d": [1.0, 2.0, 3.0, 4.0, 5.0]}
    reference = {f: {"edges": e} for f, e in edges.items()}
    labels = {"model": "block", "version": "v", "track": "stable"}
    recorder = Recorder(
        **labels,
        task="regression",
        schema=schema,
        reference=reference,
        classes=[],
        prediction={},
        metrics={},
    )
    assert (recorder._bins is not None) == as_block
    rng = np.random.default_rng(7)
    values = rng.normal(2.0, 2.0, (600, 4)).round(1)
    values[rng.random(values.shape) < 0.05] = np.nan
    values[0] = [1.0, -1.0, 2.0, 5.0]  # exactly on edges: right-closed
    values[1, 0] = np.nan
    for start, stop in [(0, 1), (1, 2), (2, 12), (12, 28), (28, 600)]:  # bisect, then numpy
        recorder.record_inputs([values[start:stop, j].copy() for j in range(4)])

    observed = {
        f: Histogram("modelops_feature_value", "d", [*labels, "feature"], buckets=e, registry=None)
        for f, e in edges.items()
    }
    for j, f in enumerate(features):
        for v in values[:, j].tolist():
            if f in observed and not math.isnan(v):
                observed[f].labels(**labels, feature=f).observe(v)
    want = _samples(observed.values())
    got = _samples([b.family for _, _, b in recorder._numeric if b is not None])
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    missing = {f: recorder._missing[j]._value.get() for j, f in enumerate(features)}
    assert missing == {f: int(np.isnan(values[:, j]).sum()) for j, f in enumerate(features)}


def test_rows_scored_inline_are_measured_past_a_busy_start() -> None:
    """The inline row count is what the model costs, not what else ran while it was timed: the
    first timings, slowed by other work, do not count."""
    clock = [0.0]
    calls = [0]

    def score(columns: list[Any]) -> tuple[Any, None]:
        calls[0] += 1
        busy = 0.01 if calls[0] <= 6 else 0.0  # the machine is busy for the first three trials
        clock[0] += busy + 0.0002 + 0.00001 * len(columns[0])
        return None, None

    scorer = object.__new__(Scorer)
    scorer.schema = SCHEMA
    scorer.score = score  # type: ignore[method-assign]
    with patch("modelops_serving.scoring.time.perf_counter", lambda: clock[0]):
        rows = scorer.rows_within(0.002)
    # one row: 0.21 ms, each more: 0.01 ms; 1 + (2 - 0.21) / 0.01 rows, give or take rounding
    assert rows == pytest.approx(180, abs=1)
    assert calls[0] > 6


def test_edges_are_checked_and_error_buckets_scale_with_the_holdout() -> None:
    assert check_edges([1, 2.5]) == [1.0, 2.5]
    for bad in ([], [1.0, 1.0], [2.0, 1.0], [1.0, math.inf], None):
        with pytest.raises(ValueError):
            check_edges(bad)
    assert error_edges({"mae": 2.0}, []) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert error_edges({}, [0.0, 10.0, 20.0])[3] == 10.0
    assert error_edges({}, [])[3] == 1.0


def test_claims_count_each_row_once_and_forget_the_oldest(tmp_path: Path) -> None:
    claims = Claims(tmp_path / "m.sqlite", capacity=3)
    assert claims.claim("a", 1) and not claims.claim("a", 1) and claims.claim("a", 0)
    other = Claims(tmp_path / "m.sqlite", capacity=3)  # another worker process sees the same
    assert not other.claim("a", 0)
    with patch("modelops_serving.feedback.PRUNE_EVERY", 1):
        for i in range(5):
            assert claims.claim(f"r{i}", 0)
    assert claims.claim("a", 1)  # beyond the newest 3 ids: forgotten


def credentials(tmp_path: Path, token: str = "t0ken", key: str = "k3y", now: float = 1e9) -> Any:
    directory = tmp_path / "credentials"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token + "\n")
    (directory / "signing-key").write_text(key)
    clock = [now]
    return Credentials(directory, clock=lambda: clock[0]), clock


def test_prediction_ids_carry_what_was_predicted_and_cannot_be_made_up(tmp_path: Path) -> None:
    creds, clock = credentials(tmp_path)
    request_id = creds.issue("iris-v1", ["setosa", "virginica"])
    opened = creds.open(request_id, window=60)
    assert not isinstance(opened, str)
    assert (opened.version, opened.predictions) == ("iris-v1", ["setosa", "virginica"])
    # the same answer to another request in the same second is another id, claimed on its own
    again = creds.open(creds.issue("iris-v1", ["setosa", "virginica"]), window=60)
    assert not isinstance(again, str) and again.signature != opened.signature

    payload, _, signature = request_id.partition(".")
    forged = b'["iris-v1",1000000000,"AAAAAAAAAAA",["x","x"]]'
    forged_payload = base64.urlsafe_b64encode(forged).decode()
    assert creds.open(f"{forged_payload.rstrip('=')}.{signature}", 60) == "forged"
    assert creds.open(f"{payload}.AAAAAAAAAAAAAAAAAAAAAA", 60) == "forged"
    assert creds.open("1f0c" * 8, 60) == "forged"
    other, _ = credentials(tmp_path / "x", key="another")
    assert other.open(request_id, 60) == "forged"  # another Model's key
    clock[0] += 61
    assert creds.open(request_id, 60) == "expired"


def test_only_the_token_authorizes(tmp_path: Path) -> None:
    creds, _ = credentials(tmp_path)
    assert creds.authorized(b"Bearer t0ken") and creds.authorized(b"bearer t0ken")
    for header in (None, b"", b"Bearer", b"Bearer t0ke", b"Bearer t0ken2", b"Basic t0ken"):
        assert not creds.authorized(header), header
    with pytest.raises(CredentialsError):
        Credentials(tmp_path / "nowhere")


def _open_memory(path: Path, start: Any, results: Any) -> None:
    start.wait()
    try:
        Claims(path, capacity=10)
        results.put("ok")
    except Exception as error:  # the failure is the result
        results.put(repr(error))


def test_workers_that_start_together_all_open_the_claims(tmp_path: Path) -> None:
    """Worker processes start at once; switching a new table to WAL must not fail any of them."""
    forked = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(100):
        path = tmp_path / f"m{round_}.sqlite"
        start, results = forked.Barrier(6), forked.Queue()
        workers = [
            forked.Process(target=_open_memory, args=(path, start, results)) for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        failures += [r for r in (results.get(timeout=5) for _ in workers) if r != "ok"]
    assert failures == []


def test_feedback_items_are_validated_and_scored(tmp_path: Path) -> None:
    creds, _ = credentials(tmp_path)
    claims = Claims(tmp_path / "f.sqlite", capacity=10)
    mine, old = creds.issue("v1", ["x", "y"]), creds.issue("v0", ["x"])
    items = parse_items(
        [
            {"request_id": mine, "row": 0, "truth": "x"},
            {"request_id": mine, "row": 1, "truth": "x"},
            {"request_id": mine, "row": 1, "truth": "y"},
            {"request_id": mine, "row": 2, "truth": "x"},
            {"request_id": old, "truth": "x"},
            {"request_id": "made.up", "truth": "x"},
        ],
        task="classification",
        max_items=10,
    )
    outcome = score(
        items, task="classification", credentials=creds, claims=claims, version="v1", window=60
    )
    assert (outcome.correct, outcome.incorrect) == (1, 1)
    assert outcome.unmatched == {
        "duplicate": 1,
        "unknown_row": 1,
        "other_version": 1,
        "forged": 1,
    }
    with pytest.raises(Rejected) as caught:
        parse_items(
            [
                {"request_id": "r", "truth": "a"},
                {"prediction": 2, "truth": 1},
                {"request_id": "r", "truth": 1, "version": "v1"},
            ],
            task="regression",
            max_items=10,
        )
    found = [(p.row, p.field, p.reason) for p in caught.value.problems]
    assert found == [
        (0, "truth", "wrong_type"),
        (1, "prediction", "extra_feature"),
        (1, "request_id", "missing_feature"),
        (2, "version", "extra_feature"),
    ]
    with pytest.raises(Rejected):
        parse_items([{"request_id": "r", "truth": 10**400}], task="regression", max_items=1)
    regression = parse_items(
        [{"request_id": creds.issue("v1", [3.0]), "truth": 1.0}], task="regression", max_items=1
    )
    scored = score(
        regression, task="regression", credentials=creds, claims=claims, version="v1", window=60
    )
    assert scored.errors == [2.0]


def test_artifact_uris_and_home_placement(tmp_path: Path) -> None:
    assert archive_path("file:///models/iris/v1.bentomodel") == Path("/models/iris/v1.bentomodel")
    assert archive_path("/models/x.bentomodel") == Path("/models/x.bentomodel")
    for bad in ("", "s3://b/x.bentomodel", "file://host/x", "models/x.bentomodel"):
        with pytest.raises(ArtifactError):
            archive_path(bad)
    archive = tmp_path / "models" / "iris" / "v1.bentomodel"
    check_home_apart(tmp_path / "home", archive)
    for home in (tmp_path / "models" / "iris", tmp_path / "models" / "iris" / "h", tmp_path):
        with pytest.raises(ArtifactError, match="overlaps"):
            check_home_apart(home, archive)


def test_the_archive_lands_in_the_home_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from serving_models import iris_classifier

    from modelops_serving import artifact

    built = iris_classifier(tmp_path / "build")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "first"))
    BentoMLContainer.model_store.get()  # binds BentoML's own store, if nothing did before
    home = tmp_path / "given"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    loaded = artifact.load(str(built.archive), "iris", "iris-v1", wait_seconds=0)
    assert loaded.version == "iris-v1"
    assert (home / "models" / "iris" / "iris-v1" / "pipeline.pkl").is_file()
