"""What a real node changes on this machine, recorded before it starts and put back after it stops.

kubelet, kube-proxy, containerd and the CNI plugins change more than their own directories: kernel
settings, iptables chains, mounts, network links, cgroups and a few fixed paths. A `Footprint`
records, before anything starts, what the machine was like (the kernel settings a node is known to
change, which of the fixed paths existed) and, as the node is set up, what the harness created
(cgroup directories, the bridge). It is saved in the node's run directory at once, so when a run is
killed (SIGKILL: no `stop()` runs) the next start finds it and puts the machine back the same way:
`sweep()` kills what is left of the node's processes, unmounts, removes the chains, links and
cgroups, restores the settings and deletes the run directory.

One node runs on a machine at a time: kube-proxy owns the machine's `KUBE-*` iptables chains, so a
second one would rewrite the first one's rules. `claim()` takes a machine-wide lock for the node's
life and cleans up after a killed run first.

`snapshot()` describes the machine (kernel settings, iptables, mounts, links, cgroups, the fixed
paths, the sandbox's files) for tests that compare it before and after.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

RUN_ROOT = Path("/run/modelops-sandbox")
LOCK_FILE = RUN_ROOT / "node.lock"
FOOTPRINT_FILE = "footprint.json"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Kernel settings that kubelet (vm.*, kernel.*), the CNI bridge plugin (forwarding) and kube-proxy
# (route_localnet, conntrack) are known to write.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
)
# Paths outside the run directory that the components write whatever they are told: kubelet's
# device-plugin socket and default directories, the CNI plugins' result cache, containerd's shim
# sockets and plugin directories. What did not exist before the node is removed after it.
OUTSIDE_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/run/netns",
    "/run/nri",
    "/etc/cni",
    "/etc/kubernetes",
    "/usr/libexec/kubernetes",
)
# Chains created by kube-proxy and kubelet (KUBE-*), the CNI plugins (CNI-*) and the harness.
OWN_CHAIN_PREFIXES = ("KUBE-", "CNI-", "MODELOPS-")


class NodeBusyError(RuntimeError):
    """Another node of this project runs on this machine."""


class RootRequiredError(RuntimeError):
    """A real node needs root: namespaces, cgroups, mounts, iptables."""


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        sysctl_path(name).write_text(value)


def run(*command: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)


@dataclass
class Footprint:
    """What the machine was like before the node, and what the harness created for it."""

    sysctls: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)  # created directories, in creation order
    bridge: str = ""
    run_dir: str = ""

    @classmethod
    def record(cls, run_dir: Path) -> Footprint:
        sysctls = {name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None}
        absent = [p for p in OUTSIDE_PATHS if not os.path.lexists(p)]
        footprint = cls(
            sysctls=sysctls, absent_paths=absent, nft_tables=nft_tables(), run_dir=str(run_dir)
        )
        footprint.save()
        return footprint

    def save(self) -> None:
        path = Path(self.run_dir) / FOOTPRINT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, run_dir: Path) -> Footprint | None:
        try:
            data = json.loads((run_dir / FOOTPRINT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)

    def created_cgroup(self, path: Path) -> None:
        self.cgroups.append(str(path))
        self.save()


# --- the machine-wide lock --------------------------------------------------------------------


@contextlib.contextmanager
def claim(run_dir: Path, say: Any = print) -> Iterator[IO[str]]:
    """Holds the machine's node lock while the block runs; cleans up after a killed run first."""
    if os.geteuid() != 0:
        raise RootRequiredError(
            "a real node needs root (network namespaces, cgroups, mounts, iptables): run as root"
        )
    lock = _lock()
    try:
        for leftover in sorted(RUN_ROOT.iterdir()):
            if leftover.is_dir():
                say(f"cleaning up after a node that was not stopped ({leftover})")
                sweep(leftover)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}: {' '.join(_cmdline(os.getpid()))[:200]}\n")
        lock.flush()
        yield lock
    finally:
        # The lock file goes too; `_lock` makes sure a holder's file is still the one on disk.
        LOCK_FILE.unlink(missing_ok=True)
        lock.close()
        with contextlib.suppress(OSError):
            RUN_ROOT.rmdir()


def _lock() -> IO[str]:
    """The machine's node lock, held (or NodeBusyError naming its holder)."""
    while True:
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        lock = LOCK_FILE.open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise NodeBusyError(
                f"another modelops sandbox node runs on this machine ({holder}); stop it first: "
                "one node per machine, because kube-proxy owns the machine's KUBE-* chains"
            ) from None
        try:
            if os.stat(LOCK_FILE).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()  # its holder removed the file as we opened it: take the new one


# --- putting the machine back -------------------------------------------------------------------


def sweep(
    run_dir: Path, kube_proxy: Path | None = None, kube_proxy_config: Path | None = None
) -> None:
    """Removes everything a node left, stopped or killed: processes, mounts, iptables chains,
    links, cgroups, kernel settings, outside paths, and the run directory itself."""
    footprint = Footprint.load(run_dir) or Footprint(run_dir=str(run_dir))
    kill_processes(run_dir, [Path(c) for c in footprint.cgroups])
    unmount_under(run_dir)
    if kube_proxy is not None and kube_proxy.exists():
        args = [str(kube_proxy), "--cleanup"]
        if kube_proxy_config is not None and kube_proxy_config.exists():
            args.append(f"--config={kube_proxy_config}")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(args, capture_output=True, timeout=60, check=False)
    remove_chains()
    if Footprint.load(run_dir) is not None:  # a record of the tables that existed before
        for table in set(nft_tables()) - set(footprint.nft_tables):
            run("nft", "delete", "table", *table.split())
    if footprint.bridge:
        delete_link_and_ports(footprint.bridge)
    for path in reversed(footprint.cgroups):
        remove_cgroup_tree(Path(path))
    for name, value in footprint.sysctls.items():
        if read_sysctl(name) != value:
            write_sysctl(name, value)
    for path in footprint.absent_paths:
        unmount_under(Path(path))
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(path)
    shutil.rmtree(run_dir, ignore_errors=True)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _cgroup_pids(root: Path) -> set[int]:
    pids: set[int] = set()
    if not root.is_dir():
        return pids
    for directory, _, _ in os.walk(root):
        with contextlib.suppress(OSError):
            text = (Path(directory) / "cgroup.procs").read_text()
            pids.update(int(p) for p in text.split())
    return pids


def kill_processes(run_dir: Path, cgroups: list[Path]) -> None:
    """SIGKILLs every process in the node's cgroups (the containers) and every process whose
    command line names the run directory (kubelet, containerd, shims, kube-proxy)."""
    me = os.getpid()
    marker = str(run_dir)
    for _ in range(50):
        victims = set()
        for cgroup in cgroups:
            victims |= _cgroup_pids(cgroup)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and any(marker in a for a in _cmdline(int(entry.name))):
                victims.add(int(entry.name))
        victims.discard(me)
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def mountpoints() -> list[str]:
    """Every mount point of this mount namespace, in mount order."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def unmount_under(directory: Path) -> None:
    """Unmounts every mount at or below `directory`, deepest first."""
    prefix = str(directory).rstrip("/")
    for _ in range(5):
        inside = [p for p in mountpoints() if p == prefix or p.startswith(prefix + "/")]
        if not inside:
            return
        for point in sorted(inside, key=lambda p: (-p.count("/"), p)):
            if run("umount", point).returncode != 0:
                run("umount", "--lazy", point)


def _iptables(family: str) -> tuple[str, str]:
    return ("iptables", "iptables-save") if family == "4" else ("ip6tables", "ip6tables-save")


def remove_chains() -> None:
    """Removes the KUBE-*, CNI-* and MODELOPS-* chains, and the rules jumping to them."""
    for family in ("4", "6"):
        binary, save = _iptables(family)
        if shutil.which(binary) is None:
            continue
        dump = run(save).stdout
        table = ""
        own: dict[str, list[str]] = {}
        jumps: list[tuple[str, str, list[str]]] = []
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:]
                own[table] = []
            elif line.startswith(":"):
                chain = line[1:].split()[0]
                if chain.startswith(OWN_CHAIN_PREFIXES):
                    own[table].append(chain)
            elif line.startswith("-A "):
                words = shlex.split(line)
                chain = words[1]
                target = words[words.index("-j") + 1] if "-j" in words else ""
                if not chain.startswith(OWN_CHAIN_PREFIXES) and target.startswith(
                    OWN_CHAIN_PREFIXES
                ):
                    jumps.append((table, chain, words[2:]))
        for table, chain, rule in jumps:
            run(binary, "-w", "-t", table, "-D", chain, *rule)
        for table, chains in own.items():
            for chain in chains:
                run(binary, "-w", "-t", table, "-F", chain)
            for chain in chains:
                run(binary, "-w", "-t", table, "-X", chain)


def nft_tables() -> list[str]:
    """The netfilter tables, as `<family> <name>` (iptables' nf_tables backend creates them)."""
    if shutil.which("nft") is None:
        return []
    out = run("nft", "list", "tables").stdout
    return [line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()]


def links() -> list[str]:
    return [
        line.split(":")[1].strip().split("@")[0]
        for line in run("ip", "-o", "link", "show").stdout.splitlines()
        if ":" in line
    ]


def delete_link_and_ports(bridge: str) -> None:
    """Deletes `bridge` and any veth still attached to it."""
    ports = run("ip", "-o", "link", "show", "master", bridge).stdout.splitlines()
    for line in ports:
        name = line.split(":")[1].strip().split("@")[0]
        run("ip", "link", "delete", name)
    if bridge in links():
        run("ip", "link", "delete", bridge)


def hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers and the unified one)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def remove_cgroup_tree(root: Path) -> None:
    """rmdir of `root` and every cgroup below it, deepest first (processes must be gone)."""
    if not root.is_dir():
        return
    for _ in range(100):  # a killed process leaves its cgroup a moment after the signal
        for directory, _subdirs, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if not root.exists():
            return
        for pid in _cgroup_pids(root):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


# --- a description of the machine, for before/after comparisons ---------------------------------

# Kernel settings that move on their own (counters, entropy, the last pid).
VOLATILE_SYSCTLS = (
    "fs.dentry-state",
    "fs.file-nr",
    "fs.inode-nr",
    "fs.inode-state",
    "fs.aio-nr",
    "fs.quota.",
    "kernel.random.",
    "kernel.ns_last_pid",
    "kernel.pty.nr",
    "kernel.sched_domain.",
    "net.netfilter.nf_conntrack_count",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
    "vm.stat_refresh",
    "vm.drop_caches",
)


def _sysctls() -> dict[str, str]:
    values = {}
    for directory, _, files in os.walk("/proc/sys"):
        for name in files:
            path = Path(directory) / name
            key = str(path.relative_to("/proc/sys")).replace("/", ".")
            if key.startswith(VOLATILE_SYSCTLS):
                continue
            with contextlib.suppress(OSError):
                values[key] = path.read_text().strip()
    return values


def _rules() -> list[str]:
    rules = []
    for family in ("4", "6"):
        _, save = _iptables(family)
        if shutil.which(save) is not None:
            for line in run(save).stdout.splitlines():
                if not line.startswith("#"):
                    rules.append(f"ipv{family} {line.split(' [')[0]}")
    return rules


def _cgroup_dirs() -> list[str]:
    found = []
    for hierarchy in hierarchies():
        for directory, _, _ in os.walk(hierarchy):
            found.append(directory)
    return sorted(found)


def snapshot() -> dict[str, Any]:
    """What the machine looks like: compare two of these to see what a run left behind."""
    return {
        "sysctls": _sysctls(),
        "iptables": _rules(),
        "nft_tables": sorted(nft_tables()),
        "mounts": sorted(mountpoints()),
        "links": sorted(links()),
        "cgroups": _cgroup_dirs(),
        "paths": sorted(p for p in OUTSIDE_PATHS if os.path.lexists(p)),
        "files": sorted(
            [str(RUN_ROOT)] * RUN_ROOT.exists()
            + [str(p) for p in Path(tempfile.gettempdir()).glob("modelops-*")]
        ),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two snapshots, one line per difference (kernel settings that exist
    only in one of them, such as a deleted link's, are not differences)."""
    found = []
    old, new = before["sysctls"], after["sysctls"]
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            found.append(f"sysctl {key}: {old[key]!r} -> {new[key]!r}")
    for part in ("iptables", "nft_tables", "mounts", "links", "cgroups", "paths", "files"):
        gone = sorted(set(before[part]) - set(after[part]))
        added = sorted(set(after[part]) - set(before[part]))
        found += [f"{part}: - {item}" for item in gone]
        found += [f"{part}: + {item}" for item in added]
    return found
