"""Dynamic provisioning of claims as host directories: the cluster's default StorageClass.

A PersistentVolumeClaim only lets a pod be scheduled once it is bound, and a cluster binds claims
through a provisioner (kind ships rancher's local-path-provisioner for this). This one does the
same job on the sandbox's single node: for every pending claim of the StorageClass `STORAGE_CLASS`
(the cluster's default) it creates a directory under its root, world-writable as the
local-path-provisioner makes them (pods run as non-root users that the directory cannot know), and
a PersistentVolume pre-bound to the claim whose `hostPath` names it; kube-controller-manager's PV
controller binds the pair and the kubelet mounts it. A volume released by its claim is deleted
together with its directory (reclaim policy Delete).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

STORAGE_CLASS = "sandbox-hostpath"
PROVISIONER = "modelops.dev/sandbox-hostpath"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_for(claim: client.V1PersistentVolumeClaim, root: Path) -> client.V1PersistentVolume:
    """The PersistentVolume that satisfies `claim`, pre-bound to it."""
    meta, spec = claim.metadata, claim.spec
    assert meta is not None and spec is not None
    requests = (spec.resources.requests if spec.resources else None) or {}
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(
            name=f"pvc-{meta.uid}", annotations={PROVISIONED_BY: PROVISIONER}
        ),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": requests.get("storage", "1Gi")},
            access_modes=spec.access_modes or ["ReadWriteOnce"],
            volume_mode=spec.volume_mode or "Filesystem",
            persistent_volume_reclaim_policy="Delete",
            storage_class_name=STORAGE_CLASS,
            host_path=client.V1HostPathVolumeSource(
                path=str(root / f"pvc-{meta.uid}"), type="Directory"
            ),
            claim_ref=client.V1ObjectReference(
                api_version="v1",
                kind="PersistentVolumeClaim",
                namespace=meta.namespace,
                name=meta.name,
                uid=meta.uid,
            ),
        ),
    )


class Provisioner:
    """Installs the StorageClass and keeps claims bound from a thread of its own."""

    def __init__(
        self, api: client.ApiClient, root: Path, say: Callable[[str], None], every: float = 0.5
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.root, self.say, self.every = root, say, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Provisioner:
        self.root.mkdir(parents=True, exist_ok=True)
        storage_class = client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=STORAGE_CLASS, annotations={DEFAULT_CLASS: "true"}),
            provisioner=PROVISIONER,
            reclaim_policy="Delete",
            volume_binding_mode="Immediate",
        )
        with contextlib.suppress(ApiException):
            self.storage.create_storage_class(storage_class)
        self._thread = threading.Thread(target=self._run, name="provisioner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sync()
            except (ApiException, OSError) as error:  # the API server going away at stop
                if not self._stop.is_set():
                    self.say(f"provisioner: {error}")

    def sync(self) -> None:
        """One pass: a volume for every pending claim, and released volumes deleted."""
        volumes = self.core.list_persistent_volume().items
        names = {v.metadata.name for v in volumes if v.metadata}
        for claim in self.core.list_persistent_volume_claim_for_all_namespaces().items:
            meta, spec = claim.metadata, claim.spec
            if meta is None or spec is None:
                continue
            # None: created before a default class existed; "" asks for no class at all.
            if (
                spec.storage_class_name not in (None, STORAGE_CLASS)
                or spec.volume_name
                or meta.deletion_timestamp
                or f"pvc-{meta.uid}" in names
            ):
                continue
            directory = self.root / f"pvc-{meta.uid}"
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o777)
            with contextlib.suppress(ApiException):
                self.core.create_persistent_volume(volume_for(claim, self.root))
            self.say(f"provisioned pvc-{meta.uid} for claim {meta.namespace}/{meta.name}")
        for volume in volumes:
            meta, status = volume.metadata, volume.status
            annotations = (meta.annotations if meta else None) or {}
            if annotations.get(PROVISIONED_BY) != PROVISIONER or not status or not meta:
                continue
            if status.phase != "Released":
                continue
            with contextlib.suppress(ApiException):
                self.core.delete_persistent_volume(str(meta.name))
            shutil.rmtree(self.root / str(meta.name), ignore_errors=True)
