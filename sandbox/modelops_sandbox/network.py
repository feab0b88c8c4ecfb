"""The node's network: a bridge for pod addresses, its CNI configuration, and a fence.

The bridge carries the node's address (kubelet's `--node-ip`, the API server's advertised
address) and every pod's veth; the CNI `bridge` plugin gives each pod an address of the subnet
from `host-local` IPAM. Nothing is NATed (`ipMasq: false`), and the fence, an iptables chain of the
harness in the mangle table's FORWARD chain (kube-proxy's rules, which accept some forwarded
traffic, are in the filter table, after it), drops whatever would be routed between the bridge and
any other interface: pods reach each other, the host and the Services' cluster IPs, and nothing
beyond this machine; nothing outside reaches them.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from modelops_sandbox.machine import Footprint, links, run

BRIDGE = "modelops0"
SUBNET = ipaddress.ip_network("10.244.0.0/24")
GATEWAY = str(SUBNET.network_address + 1)  # the node's address
NETWORK_NAME = "modelops"
FENCE = "MODELOPS-FENCE"


class NetworkError(RuntimeError):
    """A link or rule could not be set up; the message carries the command's error."""


def _must(*command: str) -> None:
    result = run(*command)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def create(footprint: Footprint) -> None:
    """The bridge, up, with the node's address; the fence in front of FORWARD."""
    if BRIDGE in links():
        raise NetworkError(f"a link named {BRIDGE} exists already; it is not this node's")
    footprint.bridge = BRIDGE
    footprint.save()
    _must("ip", "link", "add", BRIDGE, "type", "bridge")
    _must("ip", "addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
    _must("ip", "link", "set", BRIDGE, "up")
    fence = ("iptables", "-w", "-t", "mangle")
    _must(*fence, "-N", FENCE)
    _must(*fence, "-A", FENCE, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
    _must(*fence, "-A", FENCE, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP")
    _must(*fence, "-I", "FORWARD", "1", "-j", FENCE)


def cni_config(conf_dir: Path, ipam_dir: Path) -> Path:
    """The CNI network of the node's pods (read by containerd's CRI plugin)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": str(SUBNET), "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }
    path = conf_dir / f"10-{NETWORK_NAME}.conflist"
    path.write_text(json.dumps(config, indent=1))
    return path
