"""Pod addresses for the sandbox node agent: one loopback address per pod.

All of 127.0.0.0/8 routes to `lo` on Linux and any process may bind any of it, so each pod gets
its own address (by default from 127.10.0.0/16) and two pods serving on the same port coexist.
Addresses are claimed machine-wide with a lock file per address (`flock`, released by the kernel
if the agent dies), so several agents on one machine (parallel test runs) never hand out the
same address.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import tempfile
import threading
from pathlib import Path

DEFAULT_NETWORK = "127.10.0.0/16"


class AddressPool:
    def __init__(self, network: str = DEFAULT_NETWORK, lock_dir: Path | None = None) -> None:
        self.network = ipaddress.ip_network(network)
        if not self.network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"pod network {network} is not inside 127.0.0.0/8")
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "modelops-sandbox-addresses"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, tuple[str, int]] = {}  # key -> (address, lock fd)
        self._lock = threading.Lock()

    def allocate(self, key: str) -> str:
        """The address of `key` (a pod uid): the first free one, claimed until `release`."""
        with self._lock:
            if key in self._held:
                return self._held[key][0]
            for host in self.network.hosts():
                address = str(host)
                if address.endswith((".0", ".1", ".255")):
                    continue
                fd = os.open(self.lock_dir / address, os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self._held[key] = (address, fd)
                return address
        raise RuntimeError(f"no free address left in {self.network}")

    def release(self, key: str) -> None:
        with self._lock:
            held = self._held.pop(key, None)
        if held is not None:
            fcntl.flock(held[1], fcntl.LOCK_UN)
            os.close(held[1])

    def in_use(self) -> dict[str, str]:
        with self._lock:
            return {key: address for key, (address, _) in self._held.items()}
