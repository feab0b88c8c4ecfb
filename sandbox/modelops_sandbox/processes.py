"""What every process the sandbox starts shares: its own group, and death with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from typing import Any


def die_with_parent() -> None:
    """Runs in the child before exec: its own process group, SIGKILL when its parent dies."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_group(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM to the process's group; SIGKILL if it has not exited after `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    except ProcessLookupError:
        process.wait(timeout=grace)
