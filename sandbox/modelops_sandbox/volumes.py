"""A pod's volumes on the sandbox node: which local directory each is, and the files they hold.

There are no mount namespaces: every volume is a directory (`volume_dirs`), and paths are
rewritten (`modelops_sandbox.podspec`). emptyDir, configMap, secret, downwardAPI and projected
volumes live under the pod's directory; a persistentVolumeClaim is `<state>/pvc/<namespace>/
<claim>`, shared by every pod that mounts the claim; hostPath is `<state>/hostpath/<path>`, never
the real path. configMap, secret, downwardAPI and projected volumes are written as files when the
pod starts (`volume_files` is pure; `prepare` writes them, `fetch_objects` and
`service_account_token` read what they need from the API server).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_sandbox.kube import Kube, not_found
from modelops_sandbox.podspec import ConfigError, PodContext, field_ref, resource_ref

Obj = dict[str, Any]
FILE_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env and volumes refer to."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod["spec"]
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"].get("name", ""))
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
        for var in c.get("env") or []:
            source = var.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                configmaps.add(source["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in source:
                secrets.add(source["secretKeyRef"].get("name", ""))
    for volume in spec.get("volumes") or []:
        sources = [volume]
        sources += (volume.get("projected") or {}).get("sources") or []
        for s in sources:
            if "configMap" in s:
                configmaps.add(s["configMap"].get("name", ""))
            if "secret" in s:
                secrets.add(s["secret"].get("secretName") or s["secret"].get("name", ""))
    return configmaps, secrets


def secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's data, decoded (stringData never comes back from the API server)."""
    data = {k: base64.b64decode(v).decode(errors="replace") for k, v in
            (secret.get("data") or {}).items()}
    return data


def configmap_data(configmap: Mapping[str, Any]) -> dict[str, str]:
    data = dict(configmap.get("data") or {})
    for k, v in (configmap.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v).decode(errors="replace")
    return data


def volume_dirs(pod: Obj, state_dir: Path, pod_dir: Path) -> dict[str, Path]:
    """Each volume's local directory.

    emptyDir, configMap, secret, downwardAPI, projected: `<pod_dir>/volumes/<volume>`;
    persistentVolumeClaim: `<state>/pvc/<namespace>/<claim>`, shared by every pod of the claim;
    hostPath: `<state>/hostpath/<path>`, never the real host path.
    """
    namespace = pod["metadata"]["namespace"]
    dirs: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            dirs[name] = state_dir / "pvc" / namespace / claim
        elif "hostPath" in volume:
            host = volume["hostPath"]["path"].strip("/")
            dirs[name] = state_dir / "hostpath" / host
        elif any(k in volume for k in ("emptyDir", "configMap", "secret", "downwardAPI",
                                       "projected")):
            dirs[name] = pod_dir / "volumes" / name
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ConfigError(f"volume {name!r}: {kinds} is not supported by the sandbox agent")
    return dirs


def _items(
    data: Mapping[str, str], items: Iterable[Mapping[str, Any]] | None, what: str, optional: bool
) -> dict[str, str]:
    if not items:
        return dict(data)
    files: dict[str, str] = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ConfigError(f"{what}: couldn't find key {item['key']}")
        files[item["path"]] = data[item["key"]]
    return files


def volume_files(
    ctx: PodContext,
    volume: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    token: str | None = None,
) -> dict[str, str]:
    """The files (relative path -> content) of a configMap/secret/downwardAPI/projected volume."""
    sources: list[Mapping[str, Any]] = [volume]
    if "projected" in volume:
        sources = (volume["projected"] or {}).get("sources") or []
    files: dict[str, str] = {}
    for s in sources:
        if "configMap" in s:
            ref = s["configMap"]
            name, optional = ref.get("name", ""), bool(ref.get("optional"))
            data = configmaps.get(name)
            if data is None:
                if optional:
                    continue
                raise ConfigError(f'configmap "{name}" not found')
            files.update(_items(data, ref.get("items"), f'configmap "{name}"', optional))
        elif "secret" in s:
            ref = s["secret"]
            name, optional = ref.get("secretName") or ref.get("name", ""), bool(ref.get("optional"))
            data = secrets.get(name)
            if data is None:
                if optional:
                    continue
                raise ConfigError(f'secret "{name}" not found')
            files.update(_items(data, ref.get("items"), f'secret "{name}"', optional))
        elif "downwardAPI" in s:
            for item in (s["downwardAPI"] or {}).get("items") or []:
                if "fieldRef" in item:
                    files[item["path"]] = field_ref(ctx, item["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in item:
                    ref = item["resourceFieldRef"]
                    files[item["path"]] = resource_ref(ctx, ref, ref.get("containerName", ""))
        elif "serviceAccountToken" in s and token is not None:
            files[s["serviceAccountToken"].get("path", "token")] = token
    return files


def fetch_objects(
    kube: Kube, pod: Obj
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The data of the ConfigMaps and Secrets the pod refers to; a missing one is left out."""
    configmaps: dict[str, dict[str, str]] = {}
    secrets: dict[str, dict[str, str]] = {}
    names = referenced_objects(pod)
    base = f"/api/v1/namespaces/{pod['metadata']['namespace']}"
    for kind, wanted, found, decode in (
        ("configmaps", names[0], configmaps, configmap_data),
        ("secrets", names[1], secrets, secret_data),
    ):
        for name in wanted:
            try:
                found[name] = decode(kube.get(f"{base}/{kind}/{name}"))
            except ApiException as error:
                if not not_found(error):
                    raise
    return configmaps, secrets


def service_account_token(kube: Kube, pod: Obj, volume: Obj) -> str | None:
    """A token for a projected volume's serviceAccountToken source, from the TokenRequest API,
    bound to the pod (None when the volume has no such source)."""
    sources = (volume.get("projected") or {}).get("sources") or []
    wanted = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    if not wanted:
        return None
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    body: Obj = {"spec": {"expirationSeconds": int(wanted[0].get("expirationSeconds") or 3600),
                          "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                             "name": meta["name"], "uid": meta["uid"]}}}
    if wanted[0].get("audience"):
        body["spec"]["audiences"] = [wanted[0]["audience"]]
    try:
        response = kube.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            body)
    except ApiException as error:
        raise ConfigError(f"service account token: {error.reason}") from error
    return str(response["status"]["token"])


def prepare(
    kube: Kube,
    ctx: PodContext,
    state_dir: Path,
    pod_dir: Path,
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, Path]:
    """Creates every volume's directory and writes the file volumes (a volume's `defaultMode`
    applied); returns the directories. Raises ConfigError for what cannot be set up yet."""
    dirs = volume_dirs(ctx.pod, state_dir, pod_dir)
    volumes = {v["name"]: v for v in ctx.pod["spec"].get("volumes") or []}
    for name, directory in dirs.items():
        directory.mkdir(parents=True, exist_ok=True)
        volume = volumes[name]
        if not any(k in volume for k in FILE_VOLUMES):
            continue
        token = service_account_token(kube, ctx.pod, volume)
        files = volume_files(ctx, volume, configmaps, secrets, token)
        mode = next((volume[k].get("defaultMode") for k in FILE_VOLUMES if k in volume), None)
        for relative, content in files.items():
            target = directory / relative
            if not target.resolve().is_relative_to(directory.resolve()):
                raise ConfigError(f"volume {name!r}: path {relative!r} leaves it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if mode is not None:
                target.chmod(int(mode) & 0o777)
    return dirs
