"""Integration fixtures: a sandbox node agent for the modules that need pods to really run.

Module-scoped on purpose: other modules of this tier expect no node (the scheduler reports their
pods Unschedulable), so the agent's Node exists only while a module that asks for it runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelops_sandbox.controlplane import ControlPlane
from modelops_sandbox.nodeagent import AgentProcess, start_agent_process


@pytest.fixture(scope="module")
def node_agent(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    """`python -m modelops_sandbox.nodeagent` as a subprocess, its Node Ready and schedulable;
    crash-loop back-off starts at 1 s instead of 10 s to keep tests fast."""
    state = tmp_path_factory.mktemp("nodeagent")
    agent = start_agent_process(
        control_plane.kubeconfig, state, extra_args=["--restart-backoff", "1"]
    )
    try:
        yield agent
    finally:
        agent.stop()
