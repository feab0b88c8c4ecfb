"""Fixtures of the serving tests: contract-following models and real `bentoml serve` processes.

Each server gets a free loopback port, its own BENTOML_HOME and its own process group, which is
killed at teardown; a server that does not come up fails the test with the tail of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import support
from prometheus_client.parser import text_string_to_metric_families

from modelops_api import contract
from modelops_sandbox.processes import stop_group

sys.path.insert(0, str(Path(__file__).parent))

import serving_models as models

BENTOML = Path(sys.executable).parent / "bentoml"
START_DEADLINE = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


@dataclass
class Server:
    port: int
    home: Path
    log: Path
    process: subprocess.Popen[bytes]
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(
        self, path: str, body: Any = None, content: bytes | None = None, auth: bool = True
    ) -> httpx.Response:
        """A POST; with `auth`, as a caller holding the Model's token (support.bearer)."""
        headers = support.bearer() if auth else {}
        if content is not None:
            headers["content-type"] = "application/json"
            return self.client.post(path, content=content, headers=headers)
        return self.client.post(path, json=body, headers=headers)

    def get(self, path: str, auth: bool = True) -> httpx.Response:
        return self.client.get(path, headers=support.bearer() if auth else {})

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = self.get("/metrics")
        assert response.status_code == 200
        return parse_metrics(response.text)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait(self, path: str = "/readyz", deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                pytest.fail(
                    f"bentoml serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if self.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{path} not 200 within {deadline}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """Ask the whole process group to stop (the arbiter and its workers)."""
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop the process group, killing it if it does not stop within 15 s."""
        self.client.close()
        stop_group(self.process, 15)


def launch(workdir: Path, name: str, env: dict[str, str], home: Path | None = None) -> Server:
    """Start `bentoml serve` in its own process group (does not wait for it)."""
    port = free_port()
    home = home or workdir / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    full_env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MODELOPS_HOST": "127.0.0.1",
        **env,
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(BENTOML), *contract.SERVE_COMMAND[1:], "--port", str(port)],
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(port, home, log, process)


@pytest.fixture(scope="session")
def serving_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="session")
def iris(serving_dir: Path) -> models.BuiltModel:
    return models.iris_classifier(serving_dir)


@pytest.fixture(scope="session")
def price(serving_dir: Path) -> models.BuiltModel:
    return models.mixed_regressor(serving_dir)


@pytest.fixture(scope="module")
def start(serving_dir: Path) -> Iterator[Callable[..., Server]]:
    """Start servers for one module; all are stopped when the module ends."""
    started: list[Server] = []

    def _start(
        name: str, env: dict[str, str], home: Path | None = None, ready: bool = True
    ) -> Server:
        server = launch(serving_dir, name, env, home)
        started.append(server)
        if ready:
            server.wait()
        return server

    yield _start
    for server in started:
        server.terminate()
    for server in started:
        server.stop()


def model_env(built: models.BuiltModel, track: str = "stable", **extra: str) -> dict[str, str]:
    return {
        "MODELOPS_ARTIFACT": built.archive.as_uri(),
        "MODELOPS_MODEL": built.model,
        "MODELOPS_VERSION": built.version,
        "MODELOPS_TRACK": track,
        **support.serving_credentials(built.archive.parent / "credentials"),
        **extra,
    }
