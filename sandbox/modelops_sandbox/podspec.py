"""From a Pod spec to a local process: env, volumes, path rewriting, the command line (pure).

The sandbox node agent (`modelops_sandbox.nodeagent`) runs each container of a Pod as a process of
this project's Python environment; the image is ignored. Everything here is a pure function of
the Pod (as the API server returns it, camelCase dicts) and of the objects it refers to, so the
rules the operator's pod specs rely on are unit-tested without a cluster:

- env: `envFrom` first, then `env` (later wins); `valueFrom` fieldRef (downward API),
  resourceFieldRef, configMapKeyRef, secretKeyRef; `$(VAR)` expanded as Kubernetes does.
- mounts: a container's volumeMounts and terminationMessagePath as (container path, local
  path) pairs (`mounts`); `modelops_sandbox.volumes` gives every volume its local directory.
- paths: processes see the real filesystem, so every mountPath of the container, and its
  terminationMessagePath, is rewritten to its local directory or file wherever it appears as a
  path prefix in command, args, env values and workingDir (`rewrite_paths`); what a process
  reports back in its termination message gets the container paths back (`restore_paths`).
- addresses: `0.0.0.0` in command, args and env values becomes the pod's own loopback address
  (`rewrite_any_address`).
- a volume mounted at `/tmp` also becomes `TMPDIR` (unless the container sets it), since a
  process here would otherwise put its temporary files in the host's `/tmp`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(Exception):
    """The container cannot be configured yet (a missing ConfigMap, Secret or key, a bad ref).

    The agent reports it as the container's waiting reason `CreateContainerConfigError` and
    retries, as a kubelet does."""


@dataclass(frozen=True)
class PodContext:
    """What the downward API and the rewriting need besides the Pod itself."""

    pod: Obj
    pod_ip: str
    host_ip: str
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    """How to start one container: argv, environment and working directory, all local."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


# ---------------------------------------------------------------------------------------------
# $(VAR) expansion, as k8s.io/kubernetes/third_party/forked/golang/expansion does it.


def expand(value: str, mapping: Mapping[str, str]) -> str:
    """Expands `$(VAR)` from `mapping`; an unknown `$(VAR)` stays as written; `$$` is `$`."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(mapping.get(name, f"$({name})"))
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(value[checkpoint:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Downward API and env.


def field_ref(ctx: PodContext, path: str) -> str:
    """The value of a downward-API fieldPath, as a kubelet renders it."""
    meta = ctx.pod.get("metadata", {})
    spec = ctx.pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path in simple:
        return str(simple[path])
    for kind in ("labels", "annotations"):
        values: Mapping[str, str] = meta.get(kind) or {}
        if path == f"metadata.{kind}":
            return "\n".join(f'{k}="{_escape(v)}"' for k, v in sorted(values.items()))
        match = re.fullmatch(rf"metadata\.{kind}\['(.+)'\]", path)
        if match:
            return str(values.get(match.group(1), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def resource_ref(ctx: PodContext, ref: Mapping[str, Any], default_container: str) -> str:
    """A resourceFieldRef: limits default to the node's allocatable, requests to 0; rounded up."""
    name = ref.get("containerName") or default_container
    resource = str(ref.get("resource", ""))
    containers = [*ctx.pod["spec"].get("initContainers", []), *ctx.pod["spec"]["containers"]]
    container = next((c for c in containers if c["name"] == name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef names unknown container {name!r}")
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = (container.get("resources") or {}).get(kind) or {}
    raw = resources.get(what)
    if raw is None:
        raw = ctx.node_allocatable.get(what, "0") if kind == "limits" else "0"
    quantity = _quantity(raw)
    divisor = _quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ConfigError(f"resourceFieldRef {resource!r} has divisor 0")
    return str(max(math.ceil(quantity / divisor), 1 if what == "cpu" and quantity > 0 else 0))


def _quantity(value: Any) -> Decimal:
    parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    return parsed


def _key_ref(
    kind: str, ref: Mapping[str, Any], objects: Mapping[str, Mapping[str, str]]
) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = objects.get(name)
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ConfigError(f'couldn\'t find key {key} in {kind} "{name}"')
    return data[key]


def resolve_env(
    ctx: PodContext,
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment before any rewriting, as a kubelet builds it.

    `base` holds what the image and runtime would provide (PATH, HOME, HOSTNAME, ...); envFrom
    comes next, then env in order, each value `$(VAR)`-expanded against everything before it.
    `configmaps`/`secrets` map names to their (decoded) data; an absent name is a missing object.
    """
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, objects, key in (
            ("configmap", configmaps, "configMapRef"),
            ("secret", secrets, "secretRef"),
        ):
            ref = source.get(key)
            if ref is None:
                continue
            data = objects.get(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
            for k, v in data.items():
                env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_ref(ctx, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            value = resource_ref(ctx, source["resourceFieldRef"], container["name"])
        elif "configMapKeyRef" in source:
            value = _key_ref("configmap", source["configMapKeyRef"], configmaps)
        elif "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], secrets)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


# ---------------------------------------------------------------------------------------------
# Mounts.


def mounts(
    container: Mapping[str, Any], dirs: Mapping[str, Path], termination_file: Path
) -> list[tuple[str, str]]:
    """(container path, local path) pairs of the container: its volumeMounts (subPath honoured)
    and its terminationMessagePath."""
    pairs: list[tuple[str, str]] = []
    for mount in container.get("volumeMounts") or []:
        local = dirs.get(mount["name"])
        if local is None:
            raise ConfigError(f"volumeMount {mount['name']!r} names no volume of the pod")
        sub = (mount.get("subPath") or "").strip("/")
        pairs.append((mount["mountPath"], str(local / sub if sub else local)))
    path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    pairs.append((path, str(termination_file)))
    return pairs


# ---------------------------------------------------------------------------------------------
# Rewriting.

# Characters that continue a path or a word: a container path only matches where it starts and
# ends at a boundary, so `/models` never matches inside `/models2` or `/data/models`.
_PATHISH = r"[A-Za-z0-9_.~\-]"
_ANY_ADDRESS = re.compile(r"(?<![\d.])0\.0\.0\.0(?!\.?\d)")


def _replace_prefixes(value: str, table: Mapping[str, str], keep: Sequence[str]) -> str:
    if not table:
        return value
    alternatives = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
    pattern = re.compile(rf"(?:{alternatives})(?!{_PATHISH})")

    def replace(match: re.Match[str]) -> str:
        start = match.start()
        before = match.string[:start]
        if any(k and match.string.startswith(k, start) for k in keep):
            return match.group(0)  # already a local path
        if start == 0 or before.endswith("file://") or not re.match(
            rf"{_PATHISH}|/", before[-1]
        ):
            return table[match.group(0)]
        return match.group(0)

    return pattern.sub(replace, value)


def rewrite_paths(
    value: str, pairs: Iterable[tuple[str, str]], keep: Sequence[str] = ()
) -> str:
    """Replaces each container path by its local path where it appears as a path prefix.

    A container path P matches at a position when (1) it starts the string, follows a character
    that is not a path or word character (`=`, `:`, `,`, space, quote, ...), or follows
    `file://`; and (2) it ends the string or is followed by `/` or a character that is not a path
    or word character. The longest matching container path wins (`/models/x` before `/models`).
    `/` itself is never rewritten, and neither is a path that already starts with one of `keep`
    (the agent's state directory: a local path that reached a pod is left alone even when a
    mount such as `/tmp` is its prefix). One pass: a replacement is never rewritten again.
    """
    table = {c.rstrip("/"): local for c, local in pairs if c.rstrip("/")}
    return _replace_prefixes(value, table, keep)


def restore_paths(value: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The inverse of `rewrite_paths`, for what a process reports back (its termination message):
    each local path becomes the container path it stands for, so the Pod's status reads as it
    would in a cluster (`file:///models/iris/iris-v1.bentomodel`, not a sandbox directory)."""
    table = {local.rstrip("/"): c.rstrip("/") or "/" for c, local in pairs if c.rstrip("/")}
    return _replace_prefixes(value, table, ())


def rewrite_any_address(value: str, pod_ip: str) -> str:
    """`0.0.0.0` (as a whole address) becomes the pod's own address."""
    return _ANY_ADDRESS.sub(pod_ip, value)


# ---------------------------------------------------------------------------------------------
# The command line.


def base_env(venv_bin: str, pod_name: str, home: str, pod_ip: str) -> dict[str, str]:
    """What the image would provide: PATH with this environment's bin first, HOME, HOSTNAME."""
    return {
        "PATH": f"{venv_bin}:{SYSTEM_PATH}",
        "HOME": home,
        "HOSTNAME": pod_name,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "POD_IP": pod_ip,
    }


def which(command: str, venv_bin: str, path: str) -> str:
    """Resolves a bare command against the venv's bin first, then PATH; paths stay as they are."""
    if "/" in command:
        return command
    for directory in [venv_bin, *path.split(":")]:
        if not directory:
            continue
        candidate = os.path.join(directory, command)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(command)
    if found is None:
        raise ConfigError(f'executable file "{command}" not found in $PATH')
    return found


def launch(
    container: Mapping[str, Any],
    env: Mapping[str, str],
    pairs: Iterable[tuple[str, str]],
    pod_ip: str,
    venv_bin: str,
    default_cwd: str,
    keep: Sequence[str] = (),
) -> Launch:
    """argv, env and cwd of a container: `$(VAR)` expanded, then paths and `0.0.0.0` rewritten
    (`keep`: see `rewrite_paths`)."""
    pairs = list(pairs)
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if not command:
        # There is no image to take an ENTRYPOINT from: args alone are the command line.
        command, args = args, []
    if not command:
        raise ConfigError(
            "no command: the sandbox agent ignores images, so a container needs command or args"
        )

    def local(value: str) -> str:
        return rewrite_any_address(rewrite_paths(value, pairs, keep), pod_ip)

    argv = [local(expand(a, env)) for a in [*command, *args]]
    local_env = {k: local(v) for k, v in env.items()}
    tmp = next((path for mount, path in pairs if mount.rstrip("/") == "/tmp"), None)
    if tmp is not None and "TMPDIR" not in local_env:
        # In a container a volume at /tmp is where temporary files go; here /tmp is the host's.
        local_env["TMPDIR"] = tmp
    argv[0] = which(argv[0], venv_bin, local_env.get("PATH", SYSTEM_PATH))
    working_dir = container.get("workingDir")
    cwd = rewrite_paths(working_dir, pairs, keep) if working_dir else default_cwd
    return Launch(argv=argv, env=local_env, cwd=cwd)
