"""Container logs of the sandbox node agent: where they live and how to read them.

Each container's stdout and stderr go to `<state>/logs/<namespace>/<pod>/<container>.log`; when
the container restarts, the previous run's log becomes `<container>.log.previous` (what
`kubectl logs --previous` shows on a real node). `read_logs` is what `modelops logs` calls.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

SUFFIX = ".log"
PREVIOUS = ".previous"


def log_dir(state_dir: Path | str, namespace: str, pod: str) -> Path:
    return Path(state_dir) / "logs" / namespace / pod


def log_path(state_dir: Path | str, namespace: str, pod: str, container: str) -> Path:
    return log_dir(state_dir, namespace, pod) / f"{container}{SUFFIX}"


def rotate(path: Path) -> None:
    """Keeps the last run's log as `.previous` and starts an empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.replace(path.with_name(path.name + PREVIOUS))
    path.touch()


def containers(state_dir: Path | str, namespace: str, pod: str) -> list[str]:
    """Names of the containers that have a log, sorted."""
    directory = log_dir(state_dir, namespace, pod)
    return sorted(p.name[: -len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}"))


def _tail(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    if lines <= 0:
        return ""
    kept = deque(text.splitlines(keepends=True), maxlen=lines)
    return "".join(kept)


def read_logs(
    state_dir: Path | str,
    namespace: str,
    pod: str,
    container: str | None = None,
    tail: int | None = None,
    previous: bool = False,
) -> str:
    """The log of one container (the last `tail` lines if given).

    Without `container`, a pod with one container gives that container's log and a pod with
    several gives each one under a `==> name <==` header. Raises FileNotFoundError, naming what
    exists, when the pod or container has no log here.
    """
    names = containers(state_dir, namespace, pod)
    if not names:
        raise FileNotFoundError(f"no logs for pod {namespace}/{pod} under {state_dir}")
    if container is not None and container not in names:
        raise FileNotFoundError(
            f"pod {namespace}/{pod} has no container {container!r} (containers: {', '.join(names)})"
        )
    chosen = [container] if container is not None else names
    parts: list[str] = []
    for name in chosen:
        path = log_path(state_dir, namespace, pod, name)
        if previous:
            path = path.with_name(path.name + PREVIOUS)
            if not path.exists():
                raise FileNotFoundError(
                    f"container {name!r} of pod {namespace}/{pod} has no previous run"
                )
        text = _tail(path.read_text(errors="replace"), tail)
        parts.append(text if len(chosen) == 1 else f"==> {name} <==\n{text}")
    return "\n".join(parts) if len(parts) > 1 else parts[0]
