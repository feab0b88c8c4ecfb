"""A watchdog that kills what the node agent's containers leave behind if the agent dies.

PR_SET_PDEATHSIG kills each container's main process when the agent dies, but not the processes
that one started (bentoml's workers, say): they would be orphans. So the agent starts one small
watchdog process (`python -m modelops_sandbox.reaper FILE`) holding the read end of a pipe whose
write end only the agent has, and lists the process groups of its running containers in FILE.
A clean stop leaves the list empty and closes the pipe; if the agent dies instead, the kernel
closes the pipe, the watchdog reads end-of-file and SIGKILLs every group still listed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


class Reaper:
    """The agent's side: starts the watchdog and keeps the list of process groups current."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._groups: set[int] = set()
        self._lock = threading.Lock()
        self._write_end: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._save()
        read_end, self._write_end = os.pipe()  # neither end is inherited by containers
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "modelops_sandbox.reaper", str(self.path)],
                stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read_end)

    def add(self, group: int) -> None:
        with self._lock:
            self._groups.add(group)
            self._save()

    def remove(self, group: int) -> None:
        with self._lock:
            self._groups.discard(group)
            self._save()

    def _save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text("".join(f"{g}\n" for g in sorted(self._groups)))
        temporary.replace(self.path)

    def stop(self) -> None:
        """Closes the pipe: the watchdog kills whatever is still listed (nothing, after a clean
        stop) and exits."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
        if self._popen is not None:
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()


def reap(path: Path) -> list[int]:
    """SIGKILLs every process group listed in `path`; returns them."""
    try:
        groups = [int(line) for line in path.read_text().split() if line.strip()]
    except (OSError, ValueError):
        return []
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return groups


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the agent is not for us
    while sys.stdin.buffer.read(4096):
        pass
    groups = reap(Path(args[0]))
    if groups:
        print(f"[reaper] the node agent died; killed process groups {groups}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
