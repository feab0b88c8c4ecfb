"""Dynamic volume provisioning for the sandbox: claims bound to local directories.

A PersistentVolumeClaim only lets a pod be scheduled once it is bound, and a cluster binds claims
through a provisioner (kind ships rancher's local-path-provisioner for this). The sandbox node
agent does the same job for one StorageClass, `sandbox-local`, which it marks as the cluster's
default: for every pending claim of that class it creates a PersistentVolume pre-bound to the
claim (`claimRef` with the claim's uid), whose `hostPath` names the claim's directory
`<state>/pvc/<namespace>/<claim>` — the directory the agent gives every pod that mounts the
claim. kube-controller-manager's PV controller then binds the pair. A volume released by its
claim is deleted together with its directory (reclaim policy Delete).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelops_sandbox.kube import Kube

Obj = dict[str, Any]

STORAGE_CLASS = "sandbox-local"
PROVISIONER = "modelops.dev/sandbox-local"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def claim_dir(state_dir: Path, namespace: str, claim: str) -> Path:
    return state_dir / "pvc" / namespace / claim


def volume_for(claim: Obj, state_dir: Path) -> Obj:
    """The PersistentVolume that satisfies `claim`, pre-bound to it."""
    meta, spec = claim["metadata"], claim["spec"]
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {
                "path": str(claim_dir(state_dir, meta["namespace"], meta["name"])),
                "type": "DirectoryOrCreate",
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class Provisioner:
    """Owns the `sandbox-local` StorageClass while the agent runs; `sync()` does one pass."""

    def __init__(self, kube: Kube, state_dir: Path, say: Callable[[str], None]) -> None:
        self.kube = kube
        self.state_dir = state_dir
        self.say = say

    def install(self) -> None:
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        try:
            self.kube.request("POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class)
        except ApiException as error:
            if error.status != 409:
                raise

    def uninstall(self) -> None:
        try:
            self.kube.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
        except ApiException as error:
            if error.status != 404:
                raise

    def sync(self) -> None:
        volumes = self.kube.get("/api/v1/persistentvolumes")["items"]
        ours = [v for v in volumes if (v["metadata"].get("annotations") or {}).get(
            "pv.kubernetes.io/provisioned-by") == PROVISIONER]
        names = {v["metadata"]["name"] for v in volumes}
        for claim in self.kube.get("/api/v1/persistentvolumeclaims")["items"]:
            spec, meta = claim["spec"], claim["metadata"]
            if (spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName")
                    or meta.get("deletionTimestamp")
                    or f"pvc-{meta['uid']}" in names):
                continue
            volume = volume_for(claim, self.state_dir)
            Path(volume["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
            try:
                self.kube.request("POST", "/api/v1/persistentvolumes", volume)
            except ApiException as error:
                if error.status != 409:
                    raise
            self.say(f"provisioned {volume['metadata']['name']} for claim "
                     f"{meta['namespace']}/{meta['name']}")
        for volume in ours:
            if (volume.get("status") or {}).get("phase") != "Released":
                continue
            try:
                self.kube.request("DELETE", f"/api/v1/persistentvolumes/"
                                  f"{volume['metadata']['name']}")
            except ApiException as error:
                if error.status != 404:
                    raise
            path = volume["spec"]["hostPath"]["path"]
            ref = volume["spec"].get("claimRef") or {}
            expected = claim_dir(self.state_dir, ref.get("namespace", ""), ref.get("name", ""))
            in_use = any(v["spec"]["hostPath"]["path"] == path and v is not volume
                         and (v.get("status") or {}).get("phase") != "Released" for v in ours)
            if path == str(expected) and ref.get("name") and not in_use:
                shutil.rmtree(path, ignore_errors=True)
            self.say(f"deleted released volume {volume['metadata']['name']}")
