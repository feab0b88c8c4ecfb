"""Fixtures for the training runtime's tests: a private BENTOML_HOME per test (never ~/bentoml),
spec files written to the test's directory, `modelops train` run in-process with its stdout parsed,
and a local HTTP server on 127.0.0.1 for the http(s) source."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from modelops_training.cli import main


@pytest.fixture(autouse=True)
def bentoml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "bentoml-home"
    home.mkdir()
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    return home


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    def write(spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        text = json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec)
        path.write_text(text)
        return path

    return write


@dataclass
class Run:
    code: int
    result: dict[str, Any]
    stdout: str
    stderr: str
    result_file: Path

    @property
    def file_result(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.result_file.read_text())
        return loaded


@pytest.fixture
def train(
    tmp_path: Path, artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Run]:
    """Run `modelops train` in-process on a spec file; returns exit code and parsed result."""

    def run(
        spec_path: Path,
        model: str = "iris",
        version: str = "iris-v1",
        artifacts_uri: str | None = None,
        extra: list[str] | None = None,
    ) -> Run:
        result_file = tmp_path / "termination-log"
        argv = [
            "--spec", str(spec_path),
            "--model", model,
            "--version", version,
            "--artifacts", artifacts_uri or artifacts.as_uri(),
            "--result-file", str(result_file),
            *(extra or []),
        ]  # fmt: skip
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        assert len(lines) == 1, f"stdout must hold the JSON result alone, got {out!r}"
        return Run(code, json.loads(lines[0]), out, err, result_file)

    return run


REDIRECT = b"redirect:"


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path == "/slow.csv":
            time.sleep(2)
        body = self.routes.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        if body.startswith(REDIRECT):  # routes[path] = REDIRECT + b"<location>"
            self.send_response(302)
            self.send_header("Location", body.removeprefix(REDIRECT).decode())
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        if self.path != "/chunked.csv":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The client may stop reading (a download over maxBytes is cut off): not an error of the
        # server's, and no traceback for whichever test's stderr is captured by then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP server on 127.0.0.1: (base URL, routes to fill with path -> body)."""
    routes: dict[str, bytes] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
