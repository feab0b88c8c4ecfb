"""A real S3-compatible object store: SeaweedFS, serving the S3 API on loopback.

The binary is the Go-built `weed` of `hack/tools` (SeaweedFS is Apache-2.0 and builds from the Go
module proxy like the other components). One `weed server` process runs the master, one volume
server, the filer and the S3 gateway, listening on free ports of `address` (127.0.0.1); WebDAV,
the message queue, the Iceberg and Lance endpoints, the metrics port and the telemetry report stay
off. Every file it writes (data, metadata, the S3 identities, its log, its Unix sockets) is under
the given run directory, except the gRPC sockets `weed server` always puts in /tmp, which `stop()`
removes. It runs in its own process group that dies with its parent.

The S3 API has one identity, with an access key and a secret key generated at start and written to
the `-s3.config` identities file; there is no anonymous identity, so an unsigned request is refused.
The master's, volume server's and filer's own HTTP and gRPC ports have no authentication (as in any
SeaweedFS without a security.toml): they listen on loopback only, and clients use the S3 endpoint.
Clients talk to it through fsspec and s3fs, as the project does:

    with ObjectStore(run_dir) as store:
        store.create_bucket("models")
        fs = store.filesystem()
        fs.pipe("models/iris/v1.txt", b"...")
        pandas.read_parquet("s3://models/x.parquet", storage_options=store.storage_options())
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import string
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import s3fs

from modelops_sandbox import tools
from modelops_sandbox.controlplane import StartupError, free_port
from modelops_sandbox.processes import LOG_TAIL_LINES, Lifecycle, Process, log_tail, spawn

IDENTITY = "modelops"
# The services `weed server` starts here; each has an HTTP and a gRPC port.
SERVICES = ("master", "volume", "filer", "s3")
# The bucket the readiness probe writes to and deletes.
PROBE_BUCKET = "modelops-readiness-probe"


def generate_credentials() -> tuple[str, str]:
    """An access key (20 capitals and digits) and a secret key (40 characters), shaped as AWS's."""
    alphabet = string.ascii_uppercase + string.digits
    access_key = "".join(secrets.choice(alphabet) for _ in range(20))
    return access_key, secrets.token_urlsafe(30)


def s3_identities(access_key: str, secret_key: str) -> dict[str, Any]:
    """The `-s3.config` document: one identity with every action, and no anonymous one."""
    return {
        "identities": [
            {
                "name": IDENTITY,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


@dataclass
class ObjectStore(Lifecycle):
    """Starts and stops one SeaweedFS serving S3. `progress` receives one line per step."""

    directory: Path  # the run directory: everything the server keeps goes under it
    address: str = "127.0.0.1"
    region: str = "us-east-1"
    # Small volumes, grown one at a time (SeaweedFS grows 7 by default). Each bucket is a
    # collection with volumes of its own, so `max_volumes` bounds the buckets that hold objects;
    # volumes are sparse files, and the memory index of an empty one costs next to nothing.
    volume_size_limit_mb: int = 64
    max_volumes: int = 64
    startup_timeout: float = 60.0
    # `weed server` stops its volume server before its filer, whose shutdown then waits for a
    # volume to flush its metadata log to, until killed; waiting longer gains nothing.
    stop_grace: float = 3.0
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    access_key: str = field(init=False)
    secret_key: str = field(init=False)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    grpc_ports: dict[str, int] = field(init=False, default_factory=dict)
    process: Process | None = field(default=None, init=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.address}:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self.process.popen.pid if self.process else None

    @property
    def config_file(self) -> Path:
        return self.directory / "s3.json"

    @property
    def log(self) -> Path:
        return self.directory / "weed.log"

    def start(self) -> ObjectStore:
        started = time.monotonic()
        binary = tools.ensure("weed")["weed"]
        self.directory = Path(self.directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self.access_key, self.secret_key = generate_credentials()
            self.write_config()
            self._spawn(binary)
            self._wait_ready()
        except BaseException:
            self.progress(f"seaweedfs failed to start; its log is {self.log}")
            self.stop()
            raise
        elapsed = time.monotonic() - started
        self.progress(f"seaweedfs ready in {elapsed:.1f}s at {self.endpoint_url}")
        return self

    def write_config(self) -> Path:
        """Writes the S3 identities file, readable by its owner only (it holds the secret key)."""
        document = json.dumps(s3_identities(self.access_key, self.secret_key), indent=2)
        descriptor = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(document)
        return self.config_file

    def command(self, binary: Path) -> list[str]:
        """The `weed server` command line for the ports and directory chosen."""
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        ports, grpc = self.ports, self.grpc_ports
        return [
            str(binary),
            "-logtostderr=true",  # glog writes files under /tmp otherwise
            "server",
            f"-ip={self.address}",
            f"-ip.bind={self.address}",
            f"-dir={data}",
            f"-master.dir={data}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-volume.max={self.max_volumes}",
            # A fixed floor instead of 1% of the disk, which turns volumes read-only on a big disk
            # that is nearly full although the tests need megabytes.
            "-volume.minFreeSpace=256MiB",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_file}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]

    def _spawn(self, binary: Path) -> None:
        for service in SERVICES:
            self.ports[service] = free_port(self.address)
            self.grpc_ports[service] = free_port(self.address)
        env = {
            **os.environ,
            # One volume per collection (bucket) at a time instead of seven.
            "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1",
        }
        self.process = spawn(
            "seaweedfs",
            self.command(binary),
            self.log,
            [*self.ports.values(), *self.grpc_ports.values()],
            env=env,
            cwd=self.directory,
        )

    def _wait_ready(self) -> None:
        """Polls the S3 gateway's /healthz, then writes and deletes an object in a probe bucket with
        the credentials; fails early, with the log tail, if the process exits.

        /healthz answers as soon as the gateway listens, and a listing works once the filer does;
        but a fresh server takes seconds more to accept a write (the master defers its first volume
        id, the filer joins the master's lock ring after a retry), so a write is the probe."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        healthy = False
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(self._failure(f"exited with {self.process.popen.returncode}"))
            try:
                if not healthy:
                    with urllib.request.urlopen(f"{self.endpoint_url}/healthz", timeout=2) as r:
                        healthy = r.status == 200
                if healthy:
                    self._probe_write()
                    return
            except Exception as error:  # refused, no filer or volume yet: all retried
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise StartupError(self._failure(f"not ready after {self.startup_timeout}s (last: {last})"))

    def _probe_write(self) -> None:
        filesystem = self.filesystem()
        self.create_bucket(PROBE_BUCKET)
        filesystem.pipe(f"{PROBE_BUCKET}/probe", b"ready")
        filesystem.rm(f"{PROBE_BUCKET}/probe")
        filesystem.rmdir(PROBE_BUCKET)

    def _failure(self, what: str) -> str:
        return f"seaweedfs {what}; last {LOG_TAIL_LINES} lines of its log:\n{log_tail(self.log)}"

    def stop(self) -> None:
        """Stops the process group (SIGTERM, SIGKILL after `stop_grace` seconds) and removes its
        sockets in /tmp. Safe to call twice. The run directory stays (its owner removes it)."""
        if self.process is not None:
            self.process.stop(self.stop_grace)
            self.process = None
        atexit.unregister(self.stop)
        for service, port in self.grpc_ports.items():
            with contextlib.suppress(FileNotFoundError):
                Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink()

    def storage_options(self, **overrides: Any) -> dict[str, Any]:
        """fsspec's `storage_options` for s3:// URLs on this server (pandas, pyarrow, fsspec)."""
        options: dict[str, Any] = {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }
        options.update(overrides)
        return options

    def filesystem(self, **overrides: Any) -> Any:
        """A fresh `s3fs.S3FileSystem` on this server (not one of s3fs's cached instances)."""
        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options(**overrides))

    def create_bucket(self, name: str) -> str:
        """Creates a bucket (no error if it exists); its `s3://` URL."""
        filesystem = self.filesystem()
        if not filesystem.exists(name):
            filesystem.mkdir(name)
        return f"s3://{name}"
