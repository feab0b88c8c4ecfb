"""The node agent's pod watch: resource versions, 410 Gone and re-listing (no cluster needed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from modelops_sandbox.nodeagent import NodeAgent


class FakeKube:
    """Serves scripted list answers and watch streams; records what the agent asked for."""

    def __init__(self, agent: NodeAgent, lists: list[dict[str, Any]],
                 streams: list[list[dict[str, Any]]]) -> None:
        self.agent, self.lists, self.streams = agent, lists, streams
        self.watched: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        assert query == {"fieldSelector": "spec.nodeName=n1"}
        return self.lists.pop(0)

    def watch(
        self, path: str, query: Mapping[str, Any], timeout: float
    ) -> Iterator[dict[str, Any]]:
        self.watched.append(dict(query))
        if not self.streams:
            self.agent._stopping.set()
            return
        yield from self.streams.pop(0)

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        self.deleted.append(path)
        return {}


def finished_pod(name: str, version: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "resourceVersion": version}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": "Succeeded"}}


def test_watch_follows_versions_and_lists_again_after_410(tmp_path: Path) -> None:
    agent = NodeAgent("unused", tmp_path, "n1")
    kube = FakeKube(
        agent,
        lists=[{"metadata": {"resourceVersion": "10"}, "items": []},
               {"metadata": {"resourceVersion": "40"}, "items": [finished_pod("b", "39", True)]}],
        streams=[
            [{"type": "ADDED", "object": finished_pod("a", "11")},
             {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
             {"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
            [{"type": "MODIFIED", "object": finished_pod("a", "41", True)}],
        ],
    )
    agent.kube = kube  # type: ignore[assignment]
    agent._watch()
    versions = [q["resourceVersion"] for q in kube.watched]
    assert versions == ["10", "40", "41"]  # from the list, from the re-list, from the last event
    assert all(q["allowWatchBookmarks"] == "true" for q in kube.watched)
    # Finished pods are never run; those being deleted are deleted at once, with no grace.
    assert kube.deleted == ["/api/v1/namespaces/ns/pods/b", "/api/v1/namespaces/ns/pods/a"]
