"""kubelet and kube-proxy for the node: their configuration files and processes.

Both are built from `k8s.io/kubernetes` at the control plane's version. kubelet registers the Node
under its own identity (`system:node:<name>`, group `system:nodes`, as the Node authorizer
expects), serves its API on the bridge address with a certificate of the cluster's CA (the API
server verifies it for `kubectl logs` and `exec`), runs pods through containerd's CRI socket,
and puts their cgroups below the node's cgroup root. kube-proxy programs the Services' cluster IPs
with iptables. Neither writes kernel settings it can be told not to write: kubelet still writes a
few (`machine.SYSCTLS` records and restores them); kube-proxy writes none (conntrack sizing and
timeouts off, no localhost node ports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from modelops_sandbox import kubeconfig, pki
from modelops_sandbox.controlplane import ControlPlane, free_port
from modelops_sandbox.network import GATEWAY, SUBNET
from modelops_sandbox.processes import Process, spawn

NODE_NAME = "modelops-node"
# What this process's PATH lacks that kubelet runs: iptables, mount, and friends.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def kubelet_config(
    directory: Path,
    ca: Path,
    serving: pki.KeyPair,
    runtime_endpoint: str,
    cgroup_root: str,
    ports: tuple[int, int],
) -> dict[str, Any]:
    """KubeletConfiguration: every path under `directory`, the node's cgroups under
    `cgroup_root`, its API and health ports, no read-only port, webhook authentication and
    authorisation."""
    resolv = directory / "resolv.conf"
    resolv.write_text("# no cluster DNS in the sandbox: pods reach Services by cluster IP\n")
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY,
        "port": ports[0],
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports[1],
        "readOnlyPort": 0,
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": runtime_endpoint,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "resolvConf": str(resolv),
        "podLogsDir": str(directory / "pod-logs"),
        "volumePluginDir": str(directory / "volume-plugins"),
        "maxOpenFiles": 20000,
        "oomScoreAdj": 0,
        "serializeImagePulls": False,
        # No registry is reachable: the imported images must never be collected.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "protectKernelDefaults": False,
        "registerNode": True,
    }


def start_kubelet(
    control_plane: ControlPlane,
    binary: Path,
    directory: Path,
    runtime_endpoint: str,
    cgroup_root: str,
    ports: tuple[int, int],
) -> Process:
    """kubelet under `directory`, registering the Node `NODE_NAME` with the bridge address; its
    API and health ports are `ports` (the same ones when it is started again)."""
    directory.mkdir(parents=True, exist_ok=True)
    cluster_pki = control_plane.pki
    client = pki.issue(cluster_pki, "kubelet-client", f"system:node:{NODE_NAME}", "system:nodes")
    serving = pki.issue(cluster_pki, "kubelet-serving", NODE_NAME, server_ips=(GATEWAY,))
    config_file = directory / "kubelet.yaml"
    config = kubelet_config(
        directory, cluster_pki.ca.cert, serving, runtime_endpoint, cgroup_root, ports
    )
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    kubeconfig_file = kubeconfig.write(
        directory / "kubelet.kubeconfig", control_plane.server, cluster_pki.ca, client
    )
    argv = [
        str(binary),
        f"--config={config_file}",
        f"--kubeconfig={kubeconfig_file}",
        f"--root-dir={directory / 'root'}",
        f"--cert-dir={directory / 'pki'}",
        f"--node-ip={GATEWAY}",
        f"--hostname-override={NODE_NAME}",
        "--v=1",
    ]
    env = {**os.environ, "PATH": SYSTEM_PATH}
    return spawn("kubelet", argv, directory / "kubelet.log", list(ports), env=env)


def kube_proxy_config(kubeconfig_file: Path, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_file)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": GATEWAY,
        "clusterCIDR": str(SUBNET),
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        "nodePortAddresses": [f"{GATEWAY}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "0s"},
        # Zero: leave the machine's conntrack table size and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kubelet_ports() -> tuple[int, int]:
    """Free ports for kubelet's API (on the bridge address) and health check (on loopback)."""
    return free_port(GATEWAY), free_port()


def start_kube_proxy(control_plane: ControlPlane, binary: Path, directory: Path) -> Process:
    """kube-proxy; its healthz port (200 once it has written the Services' rules) is the
    process's only port."""
    directory.mkdir(parents=True, exist_ok=True)
    cluster_pki = control_plane.pki
    client = pki.issue(cluster_pki, "kube-proxy", "system:kube-proxy")
    kubeconfig_file = kubeconfig.write(
        directory / "kube-proxy.kubeconfig", control_plane.server, cluster_pki.ca, client
    )
    config_file = kube_proxy_config_path(directory)
    healthz = free_port()
    config_file.write_text(yaml.safe_dump(kube_proxy_config(kubeconfig_file, healthz)))
    argv = [str(binary), f"--config={config_file}", "--v=1"]
    env = {**os.environ, "PATH": SYSTEM_PATH}
    return spawn("kube-proxy", argv, directory / "kube-proxy.log", [healthz], env=env)


def kube_proxy_config_path(directory: Path) -> Path:
    return directory / "kube-proxy.yaml"
