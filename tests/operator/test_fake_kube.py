"""FakeKube (tests/fake_kube.py) answers as kube-apiserver does where the operator can tell:
through `Kube`'s own methods, so these also pin what the reconcile-pass tests rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_kube import FakeKube, merge_patch
from kubernetes.client.exceptions import ApiException

from modelops_api import contract
from modelops_operator.runtime.kube import namespace_terminating
from modelops_operator.runtime.store import Store

pytestmark = pytest.mark.unit

NS = "ml"
MANAGED = {contract.LABEL_MANAGED_BY: contract.MANAGED_BY, contract.LABEL_MODEL: "iris"}


def deployment(replicas: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "labels": {**MANAGED, **labels}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": []}}},
    }


def version(name: str = "iris-v1") -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": NS, "labels": MANAGED},
        "spec": {"model": "iris", "reason": "initial"},
        "status": {"phase": "Succeeded"},  # ignored on create: the status subresource owns it
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(Store(), namespace=NS)


def test_create_get_delete_answer_as_the_api_server(kube: FakeKube) -> None:
    created = kube.create(version())
    assert created is not None
    meta = created["metadata"]
    assert (meta["generation"], meta["namespace"]) == (1, NS)
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert "status" not in created
    assert kube.create(version()) is None  # 409: the name is taken
    assert kube.get("ModelVersion", NS, "iris-v1") == created
    assert kube.get("ModelVersion", NS, "nope") is None
    assert kube.delete("ModelVersion", NS, "iris-v1") is True
    assert kube.delete("ModelVersion", NS, "iris-v1") is False
    assert kube.store is not None and kube.store.get("ModelVersion", NS, "iris-v1") is None
    assert [m for m, _ in kube.calls()] == ["POST", "POST", "GET", "GET", "DELETE", "DELETE"]


def test_resource_versions_increase_and_generation_follows_the_spec(kube: FakeKube) -> None:
    first = kube.apply(deployment(1))
    same = kube.apply(deployment(1))
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    scaled = kube.apply(deployment(3))
    assert scaled["metadata"]["generation"] == 2
    assert int(scaled["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    ready = kube.make_ready("web")
    assert ready["metadata"]["generation"] == 2  # a status write is no new generation
    assert ready["status"]["readyReplicas"] == 3
    assert int(ready["metadata"]["resourceVersion"]) > int(scaled["metadata"]["resourceVersion"])
    relabelled = kube.apply(deployment(3, extra="yes"))
    assert relabelled["metadata"]["generation"] == 2  # metadata is no spec
    service = kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"ports": []},
        }
    )
    assert "generation" not in service["metadata"]


def test_apply_replaces_what_it_declares_and_keeps_what_others_wrote(kube: FakeKube) -> None:
    kube.apply(deployment(1, team="a"))
    kube.make_ready("web")
    body = deployment(2)
    body["spec"].pop("template")
    answer = kube.apply(body)
    assert answer["spec"] == {"replicas": 2}  # a field no longer declared goes
    assert "team" not in answer["metadata"]["labels"]
    assert answer["status"]["readyReplicas"] == 1  # the controller's status stays
    stored = kube.object("Deployment", "web")
    assert stored is not None and stored["metadata"]["uid"] == answer["metadata"]["uid"]


def test_ensure_skips_an_apply_that_would_change_nothing(kube: FakeKube) -> None:
    kube.ensure(deployment(2))
    kube.make_ready("web")  # status changes do not count
    kube.requests.clear()
    kube.ensure(deployment(2))
    assert kube.calls() == []
    kube.put(deployment(5))  # someone edits the spec: the next ensure puts it back
    assert kube.ensure(deployment(2))["spec"]["replicas"] == 2
    assert len(kube.requests) == 1


def test_patch_status_is_a_merge_patch_and_404_forgets(kube: FakeKube) -> None:
    kube.create(version())
    kube.patch_status("ModelVersion", NS, "iris-v1", {"phase": "Training", "job": "iris-v1"})
    done = kube.patch_status("ModelVersion", NS, "iris-v1", {"phase": "Succeeded", "job": None})
    assert done["status"] == {"phase": "Succeeded"}
    assert done["metadata"]["generation"] == 1
    kube.remove("ModelVersion", "iris-v1")
    assert kube.store is not None
    kube.store.put("ModelVersion", done)  # a stale store
    with pytest.raises(ApiException) as missing:
        kube.patch_status("ModelVersion", NS, "iris-v1", {"phase": "Failed"})
    assert missing.value.status == 404
    assert kube.store.get("ModelVersion", NS, "iris-v1") is None


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": 1}
    assert merge_patch(target, {"a": {"b": None, "x": 3}, "d": [3], "e": None}) == {
        "a": {"c": 2, "x": 3},
        "d": [3],
    }
    assert merge_patch(target, {"a": {}}) == target  # an empty object changes nothing


def test_list_filters_by_labels_and_namespace(kube: FakeKube) -> None:
    kube.apply(deployment(1))
    other = deployment(1)
    other["metadata"].update(name="other", namespace="elsewhere", labels={"x": "y"})
    kube.apply(other)
    assert [d["metadata"]["name"] for d in kube.list("Deployment", "", {})] == ["other", "web"]
    mine = kube.list("Deployment", NS, contract.MANAGED)
    assert [d["metadata"]["name"] for d in mine] == ["web"]
    assert "kind" not in mine[0]  # built-in kinds' list items carry no kind, as on a cluster
    assert kube.list("Deployment", "", {"x": "y"})[0]["metadata"]["namespace"] == "elsewhere"
    kube.create(version())
    assert kube.list("ModelVersion", NS, {})[0]["kind"] == "ModelVersion"


def test_deleting_an_owner_collects_what_it_owns(kube: FakeKube) -> None:
    owner = kube.create(version())
    assert owner is not None
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "iris-v1",
            "namespace": NS,
            "labels": MANAGED,
            "ownerReferences": [{"kind": "ModelVersion", "uid": owner["metadata"]["uid"]}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "train"}]}}},
    }
    kube.create(job)
    kube.finish_job("iris-v1", {"phase": "Succeeded"})
    assert len(kube.names("Pod")) == 1
    kube.delete("ModelVersion", NS, "iris-v1")
    assert kube.names("Job") == kube.names("Pod") == []
    assert kube.store is not None and kube.store.get("Job", NS, "iris-v1") is None


def test_finish_job_reports_the_result_where_the_operator_reads_it(kube: FakeKube) -> None:
    kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "iris-v1", "namespace": NS, "labels": MANAGED},
            "spec": {"template": {"spec": {"containers": [{"name": contract.TRAINING_CONTAINER}]}}},
        }
    )
    kube.finish_job("iris-v1", {"phase": "Rejected"}, succeeded=False)
    (pod,) = kube.list("Pod", NS, {"batch.kubernetes.io/job-name": "iris-v1"})
    (container,) = pod["status"]["containerStatuses"]
    assert container["name"] == contract.TRAINING_CONTAINER
    assert json.loads(container["state"]["terminated"]["message"]) == {"phase": "Rejected"}
    job = kube.get("Job", NS, "iris-v1")
    assert job is not None
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == [
        ("Failed", "BackoffLimitExceeded")
    ]


def test_injected_failures_raise_with_a_status_body(kube: FakeKube) -> None:
    causes = [{"reason": "NamespaceTerminating"}]
    kube.fail("PATCH", "Deployment", status=403, reason="Forbidden", message="no", causes=causes)
    with pytest.raises(ApiException) as refused:
        kube.apply(deployment())
    assert refused.value.status == 403 and namespace_terminating(refused.value)
    assert json.loads(refused.value.body or "{}")["message"] == "no"
    assert kube.object("Deployment", "web") is None
    assert kube.apply(deployment())["metadata"]["name"] == "web"  # only the next one fails
    assert len(kube.requests) == 2


def test_events_are_recorded(kube: FakeKube) -> None:
    obj = kube.create(version())
    assert obj is not None
    kube.post_event(obj, "Warning", "TrainingFailed", "boom", "2024-01-01T00:00:00Z")
    (event,) = kube.events
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == (
        "TrainingFailed",
        "Warning",
        "iris-v1",
    )
    assert event["metadata"]["name"].startswith("iris-v1.")
    assert kube.event_reasons() == ["TrainingFailed"]


def test_nothing_reaches_for_a_network(kube: FakeKube) -> None:
    with pytest.raises(AssertionError, match="not request"):
        kube.api_client.call_api("GET", "http://example.invalid/")
