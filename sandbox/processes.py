"""What every process the sandbox starts shares: its own group, and death with its parent."""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent() -> None:
    """Runs in the child before exec: its own process group, SIGKILL when its parent dies."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
