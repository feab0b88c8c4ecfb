"""The node's cgroup root, nested below the cgroup this process runs in.

A machine's supervisor may keep a session in a memory cgroup of its own (`/proc/self/cgroup`
shows, say, `memory:/process_api/<id>`). The node must stay inside it, never modify or move it:
kubelet's `cgroupRoot` is that path plus one directory of the node's, created in every mounted
hierarchy (kubelet uses one relative path in all of them), so the pods' cgroups land in
`.../<node>/kubepods/...`, inside the supervisor's. Every directory the harness creates is recorded
in the node's `Footprint`, so a stop or the next start removes exactly those.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from modelops_sandbox.machine import Footprint, hierarchies

# The cpuset controller starts a new cgroup with no CPUs and no memory nodes: copy them down.
CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")


def own_path() -> str:
    """The cgroup path this process runs in: the memory controller's where it has one (that is
    the one a supervisor limits), else the unified hierarchy's."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") or [""]:
            paths[controller] = path
    return paths.get("memory") or paths.get("") or "/"


def create_root(name: str, footprint: Footprint) -> str:
    """Creates `<own path>/<name>` in every hierarchy, the unified one of a hybrid machine too
    (runc mirrors the pods' cgroups there); returns it (kubelet's `cgroupRoot`)."""
    relative = f"{own_path().rstrip('/')}/{name}"
    for hierarchy in hierarchies():
        current = hierarchy
        for part in relative.strip("/").split("/"):
            parent, current = current, current / part
            if current.is_dir():
                continue
            current.mkdir()
            footprint.created_cgroup(current)
            if hierarchy.name == "cpuset":
                for file in CPUSET_FILES:
                    with contextlib.suppress(OSError):
                        (current / file).write_text((parent / file).read_text())
    return relative
