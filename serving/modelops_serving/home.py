"""One serving runtime per BENTOML_HOME, enforced before BentoML touches the directory.

`bentoml serve` imports the service module first and only then clears
`$BENTOML_HOME/prometheus_multiproc_dir`. At that import the runtime takes an exclusive lock on
`$BENTOML_HOME/modelops-serving.lock` and writes its pid there, and keeps it while it runs. The
worker processes it spawns find the lock held by their parent and go on; any other process that
finds it held refuses to start, before it can wipe or mix the metrics of the runtime that owns the
directory.

The same import points temporary files (BentoML's staging of the imported model, its socket
directory) at `$BENTOML_HOME/tmp` unless TMPDIR is set, and the worker processes inherit it, so a
pod with a read-only root filesystem needs only BENTOML_HOME writable.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

LOCK_FILE = "modelops-serving.lock"

_held: IO[str] | None = None


class HomeInUse(RuntimeError):
    """Another live runtime owns this BENTOML_HOME."""


def claim(home: str | None = None) -> None:
    """Own BENTOML_HOME for this process tree, or raise HomeInUse. No-op when it is unset."""
    global _held
    home = os.environ.get("BENTOML_HOME", "") if home is None else home
    if not home or _held is not None:
        return
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if not os.environ.get("TMPDIR"):
        scratch = path / "tmp"
        scratch.mkdir(exist_ok=True)
        os.environ["TMPDIR"] = str(scratch)
        tempfile.tempdir = None  # recomputed from TMPDIR on next use
    handle = open(path / LOCK_FILE, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        if owner == str(os.getppid()):
            return  # a worker of the runtime that owns the directory
        raise HomeInUse(
            f"BENTOML_HOME {home} is in use by another serving runtime (pid {owner or '?'}); "
            "give every runtime its own pod-local BENTOML_HOME"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held = handle
