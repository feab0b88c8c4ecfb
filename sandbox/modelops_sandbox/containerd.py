"""containerd for the node: its configuration, its process, and images imported into it.

containerd 2.x and its runc shim are built from the Go module proxy (`hack/tools/containerd`);
runc and the CNI plugins are Debian's. Every directory containerd would keep in a fixed place is
moved under the node's run directory (state, the socket, runc's state, the network namespaces'
mounts, the `opt` plugin's directory) but one: its root, the image store, is a cache
(`~/.cache/modelops/containerd`) that outlives the node, so that an image is imported once per
build rather than once per node; every container in it is removed when the node starts
(`remove_containers`), whether the previous node stopped or was killed. What containerd still
writes elsewhere (the shims' sockets under `/run/containerd/s`) is in `machine.OUTSIDE_PATHS`.
No registry is reachable, and none is tried: every registry's only host is a closed loopback port
(`registry_hosts`), so a pod naming an image that was not imported fails at once with an
`ErrImagePull` and no traffic leaves the machine. The pause image and the project's images are
imported (`import_image`), and the kubelet's pods use them with `imagePullPolicy: IfNotPresent` or
`Never`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelops_sandbox.controlplane import StartupError
from modelops_sandbox.processes import Process, log_tail, spawn

NAMESPACE = "k8s.io"  # the containerd namespace of the CRI plugin
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"


# A port nothing listens on: discard (9/tcp) on loopback.
NO_REGISTRY = "http://127.0.0.1:9"


def registry_hosts(directory: Path) -> Path:
    """containerd's registry hosts directory: the default for every registry is `NO_REGISTRY`."""
    hosts = directory / "certs.d"
    (hosts / "_default").mkdir(parents=True, exist_ok=True)
    (hosts / "_default" / "hosts.toml").write_text(
        f'server = "{NO_REGISTRY}"\n[host."{NO_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return hosts


def config(directory: Path, root: Path, cni_conf_dir: Path) -> str:
    """containerd's configuration (version 3): the image store in `root`, the rest in
    `directory`."""
    d = directory
    return f"""version = 3
root = "{root}"
state = "{d / "state"}"

[grpc]
  address = "{d / "containerd.sock"}"

[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "{d / "opt"}"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "{PAUSE_IMAGE}"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "{registry_hosts(d)}"
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{RUNC}"
          Root = "{d / "runc"}"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["{CNI_BIN_DIR}"]
      conf_dir = "{cni_conf_dir}"
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
"""


@dataclass
class Containerd:
    """One containerd, configured under `directory`."""

    directory: Path
    root: Path
    binaries: dict[str, Path]
    cni_conf_dir: Path
    progress: Callable[[str], None]
    process: Process | None = field(default=None, init=False)

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60.0) -> Containerd:
        self.directory.mkdir(parents=True, exist_ok=True)
        config_file = self.directory / "config.toml"
        config_file.write_text(config(self.directory, self.root, self.cni_conf_dir))
        log = self.directory / "containerd.log"
        # The shim of the same build first on PATH: containerd starts `containerd-shim-runc-v2`.
        shim_dir = self.binaries["containerd-shim-runc-v2"].parent
        env = {**os.environ, "PATH": f"{shim_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        argv = [str(self.binaries["containerd"]), f"--config={config_file}"]
        self.process = spawn("containerd", argv, log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(f"containerd exited:\n{log_tail(log)}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise StartupError(f"containerd did not answer in {timeout:.0f}s:\n{log_tail(log)}")

    def ctr(
        self, *args: str, check: bool = True, stdin: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries["ctr"]), "--address", str(self.socket), "-n", NAMESPACE, *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def import_image(self, archive: Path, reference: str) -> bool:
        """Imports a docker archive and unpacks it for the CRI's snapshotter, unless this very
        archive (its name carries the image ID) was imported before; whether it imported."""
        marker = self.root / "modelops-imported" / archive.name
        if marker.exists() and reference in self.images():
            return False
        with archive.open("rb") as data:
            self.ctr("images", "import", "--snapshotter", "overlayfs", "-", stdin=data.fileno())
        marker.parent.mkdir(parents=True, exist_ok=True)
        for old in marker.parent.glob(f"{archive.name.rsplit('-', 1)[0]}-*"):
            old.unlink()
        marker.touch()
        self.remove_stale_images()
        return True

    def remove_stale_images(self) -> list[str]:
        """Removes the image records no tag points at any more: the CRI names each image it sees
        by its ID (`sha256:...`) too, and that name keeps a replaced image, its layers and its
        unpacked snapshot (gigabytes per build) alive after a new one took its tag. Content in
        use by a container stays until the container goes (containerd's garbage collector)."""
        rows = [line.split() for line in self.ctr("images", "list").stdout.splitlines()[1:]]
        tagged = {row[2] for row in rows if len(row) > 2 and not row[0].startswith("sha256:")}
        stale = [
            row[0] for row in rows if len(row) > 2 and row[0].startswith("sha256:")
            and row[2] not in tagged
        ]  # fmt: skip
        for ref in stale:
            self.ctr("images", "rm", ref, check=False)
        return stale

    def images(self) -> set[str]:
        out = self.ctr("images", "list", "--quiet").stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def remove_containers(self) -> int:
        """Removes every container and pod sandbox of the CRI's namespace (a previous node's);
        how many containers there were."""
        containers = self.ctr("containers", "list", "--quiet").stdout.split()
        for container in containers:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", container, check=False)
            self.ctr("tasks", "delete", "--force", container, check=False)
            self.ctr("containers", "delete", container, check=False)
        for sandbox in self.ctr("sandboxes", "list", "--quiet", check=False).stdout.split():
            self.ctr("sandboxes", "remove", "--force", sandbox, check=False)
        return len(containers)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(15)
            self.process = None
