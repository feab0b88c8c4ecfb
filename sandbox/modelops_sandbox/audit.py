"""The API server's audit log: which requests an identity made, and how they were answered.

`flags()` turns auditing on for a control plane (`ControlPlane(apiserver_args=...)`) with a policy
that records the metadata of the requests of the given users or groups once answered, and nothing
else; `events()` reads the log back. The scale benchmark counts the operator's requests with it;
the node tests count the operator's refused ones.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml


def flags(
    directory: Path, users: Sequence[str] = (), groups: Sequence[str] = ()
) -> tuple[list[str], Path]:
    """kube-apiserver flags that audit the requests of `users` and `groups` into a JSON log in
    `directory`; the flags and the log's path."""
    rule: dict[str, Any] = {"level": "Metadata"}
    if users:
        rule["users"] = list(users)
    if groups:
        rule["userGroups"] = list(groups)
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [rule, {"level": "None"}],
    }
    directory.mkdir(parents=True, exist_ok=True)
    policy_file = directory / "audit-policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    log = directory / "audit.log"
    args = [
        f"--audit-policy-file={policy_file}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
    ]
    return args, log


def events(log: Path) -> Iterator[dict[str, Any]]:
    """The audit events written so far (the log is written in batches, about once a second)."""
    if not log.exists():
        return
    with log.open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


DECISION = "authorization.k8s.io/decision"


def received(event: dict[str, Any]) -> datetime.datetime:
    """When the API server received the event's request (RFC 3339, microseconds, UTC)."""
    return datetime.datetime.fromisoformat(event["requestReceivedTimestamp"])


def denied(log: Path, username_prefix: str, since: datetime.datetime | None = None) -> list[str]:
    """Requests of users whose name starts with `username_prefix` that authorization (RBAC)
    refused (since `since`, when given), as `verb resource namespace/name: reason`. Other 403s (a
    write into a terminating namespace, an admission plugin's refusal) are not authorization's and
    are not counted."""
    refused = []
    for event in events(log):
        status = event.get("responseStatus") or {}
        if (event.get("annotations") or {}).get(DECISION) != "forbid":
            continue
        if since is not None and received(event) < since:
            continue
        if not event.get("user", {}).get("username", "").startswith(username_prefix):
            continue
        ref = event.get("objectRef") or {}
        where = f"{ref.get('namespace', '')}/{ref.get('name', '')}".strip("/")
        refused.append(
            f"{event['verb']} {ref.get('resource', event.get('requestURI'))} {where}: "
            f"{status.get('reason', '')} {status.get('message', '')}".strip()
        )
    return refused
