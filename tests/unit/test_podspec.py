"""The node agent's pod-spec rules: env resolution, `$(VAR)` expansion, volumes, path rewriting."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from modelops_sandbox import podspec, volumes
from modelops_sandbox.podspec import ConfigError, PodContext


def make_pod(**spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "runtime:1", "command": ["python"]}
    return {
        "metadata": {
            "name": "train-1",
            "namespace": "ml",
            "uid": "u-1",
            "labels": {"app": "iris", "track": "stable"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "sandbox-node", "serviceAccountName": "trainer",
                 "containers": [container], **spec},
    }


def ctx(pod: dict[str, Any]) -> PodContext:
    return PodContext(pod, "127.10.0.7", "127.0.0.1", {"cpu": "2", "memory": "8Gi"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)/x", "alpha/x"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("a$$b", "a$b"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("end$", "end$"),
        ("$(A)$(B)", "alphabeta"),
    ],
)
def test_expansion_follows_kubernetes(value: str, expected: str) -> None:
    assert podspec.expand(value, {"A": "alpha", "B": "beta"}) == expected


def test_env_resolves_every_source_in_kubernetes_order() -> None:
    container = {
        "name": "main",
        "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                 "divisor": "1Mi"}}},
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                                     "divisor": "1m"}}},
            {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                  "key": "level"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                              "optional": True}}},
            {"name": "URL", "value": "http://$(IP):3000/$(NAME)"},
            {"name": "CFG_level", "value": "override"},
        ],
    }
    pod = make_pod(containers=[container])
    env = podspec.resolve_env(
        ctx(pod), container, {"settings": {"level": "debug"}}, {"creds": {"token": "s3cret"}},
        base={"PATH": "/bin"},
    )
    assert env["PATH"] == "/bin"
    assert env["CFG_level"] == "override"  # env wins over envFrom
    assert env["token"] == "s3cret"
    assert (env["NAME"], env["NS"], env["UID"]) == ("train-1", "ml", "u-1")
    assert (env["IP"], env["HOST"], env["NODE"], env["SA"]) == (
        "127.10.0.7", "127.0.0.1", "sandbox-node", "trainer")
    assert env["APP"] == "iris"
    assert env["LABELS"] == 'app="iris"\ntrack="stable"'
    assert env["MEM"] == "512"
    assert env["CPU_REQ"] == "250"
    assert env["CPU_LIM"] == "2"  # no limit: the node's allocatable
    assert env["LEVEL"] == "debug" and env["TOKEN"] == "s3cret"
    assert "GONE" not in env
    assert env["URL"] == "http://127.10.0.7:3000/train-1"


def test_missing_references_are_config_errors_unless_optional() -> None:
    pod = make_pod()
    missing_map = {"name": "main", "env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}
    with pytest.raises(ConfigError, match='configmap "absent" not found'):
        podspec.resolve_env(ctx(pod), missing_map, {}, {})
    missing_key = {"name": "main", "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="couldn't find key k"):
        podspec.resolve_env(ctx(pod), missing_key, {}, {"s": {}})
    optional = {"name": "main", "envFrom": [{"configMapRef": {"name": "absent",
                                                              "optional": True}}]}
    assert podspec.resolve_env(ctx(pod), optional, {}, {}) == {}


def test_path_rewriting_matches_whole_path_prefixes_only() -> None:
    pairs = [
        ("/models", "/state/pvc/ml/artifacts"),
        ("/home/bentoml", "/state/pods/u/volumes/home"),
        ("/home/bentoml/cache", "/state/pods/u/volumes/cache"),
        ("/dev/termination-log", "/state/pods/u/containers/main/termination-log"),
        ("/", "/never"),
    ]
    cases = {
        "/models": "/state/pvc/ml/artifacts",
        "/models/": "/state/pvc/ml/artifacts/",
        "/models/iris/v1.bentomodel": "/state/pvc/ml/artifacts/iris/v1.bentomodel",
        "file:///models": "file:///state/pvc/ml/artifacts",
        "file:///models/iris": "file:///state/pvc/ml/artifacts/iris",
        "--artifacts=file:///models": "--artifacts=file:///state/pvc/ml/artifacts",
        "BENTOML_HOME=/home/bentoml": "BENTOML_HOME=/state/pods/u/volumes/home",
        "/home/bentoml/cache/x": "/state/pods/u/volumes/cache/x",  # the longest mount wins
        "/home/bentoml/cached": "/state/pods/u/volumes/home/cached",
        "/dev/termination-log": "/state/pods/u/containers/main/termination-log",
        "/a:/models/bin": "/a:/state/pvc/ml/artifacts/bin",
        "/models2": "/models2",
        "/data/models": "/data/models",
        "http://host/models": "http://host/models",
        "models": "models",
        "/dev/termination-log.bak": "/dev/termination-log.bak",
        "/usr/bin/python": "/usr/bin/python",
    }
    for value, expected in cases.items():
        assert podspec.rewrite_paths(value, pairs) == expected, value


def test_any_address_becomes_the_pod_address() -> None:
    ip = "127.10.0.9"
    assert podspec.rewrite_any_address("0.0.0.0", ip) == ip
    assert podspec.rewrite_any_address("--host=0.0.0.0:3000", ip) == f"--host={ip}:3000"
    assert podspec.rewrite_any_address("http://0.0.0.0/x", ip) == f"http://{ip}/x"
    assert podspec.rewrite_any_address("10.0.0.0.1", ip) == "10.0.0.0.1"
    assert podspec.rewrite_any_address("0.0.0.01", ip) == "0.0.0.01"
    assert podspec.rewrite_any_address("10.0.0.0", ip) == "10.0.0.0"


def test_volumes_map_to_local_directories(tmp_path: Path) -> None:
    pod = make_pod(volumes=[
        {"name": "scratch", "emptyDir": {}},
        {"name": "store", "persistentVolumeClaim": {"claimName": "artifacts"}},
        {"name": "host", "hostPath": {"path": "/var/data"}},
        {"name": "conf", "configMap": {"name": "settings"}},
    ])
    dirs = volumes.volume_dirs(pod, tmp_path, tmp_path / "pods" / "u-1")
    assert dirs == {
        "scratch": tmp_path / "pods" / "u-1" / "volumes" / "scratch",
        "store": tmp_path / "pvc" / "ml" / "artifacts",
        "host": tmp_path / "hostpath" / "var" / "data",
        "conf": tmp_path / "pods" / "u-1" / "volumes" / "conf",
    }
    with pytest.raises(ConfigError, match="not supported"):
        volumes.volume_dirs(make_pod(volumes=[{"name": "n", "nfs": {}}]), tmp_path, tmp_path)


def test_volume_files_honour_items_and_projections() -> None:
    pod = make_pod()
    configmaps = {"settings": {"a.yaml": "a: 1", "b.yaml": "b: 2"}}
    secrets = {"creds": {"token": "s3cret"}}
    assert volumes.volume_files(ctx(pod), {"configMap": {"name": "settings"}}, configmaps,
                                secrets) == {"a.yaml": "a: 1", "b.yaml": "b: 2"}
    items = {"secret": {"secretName": "creds", "items": [{"key": "token", "path": "t/x"}]}}
    assert volumes.volume_files(ctx(pod), items, configmaps, secrets) == {"t/x": "s3cret"}
    projected = {"projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "optional": True}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    files = volumes.volume_files(ctx(pod), projected, configmaps, secrets, token="jwt")
    assert files == {"token": "jwt", "namespace": "ml"}
    with pytest.raises(ConfigError):
        volumes.volume_files(ctx(pod), {"configMap": {"name": "absent"}}, {}, {})


def test_secret_data_is_decoded() -> None:
    encoded = base64.b64encode(b"value").decode()
    assert volumes.secret_data({"data": {"k": encoded}}) == {"k": "value"}


def test_launch_expands_then_rewrites_and_resolves_the_venv_first(tmp_path: Path) -> None:
    venv_bin = tmp_path / "bin"
    venv_bin.mkdir()
    tool = venv_bin / "modelops"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    container = {
        "name": "main",
        "command": ["modelops", "train"],
        "args": ["--result-file", "/dev/termination-log", "--artifacts", "file:///models",
                 "--out", "$(OUT)/x", "--host", "0.0.0.0"],
        "workingDir": "/models/work",
        "volumeMounts": [{"name": "store", "mountPath": "/models"}],
    }
    dirs = {"store": tmp_path / "pvc"}
    pairs = podspec.mounts(container, dirs, tmp_path / "term")
    env = {"OUT": "/models/out", "PATH": "/usr/bin", "BIND": "0.0.0.0:3000"}
    launch = podspec.launch(container, env, pairs, "127.10.0.3", str(venv_bin), "/cwd")
    pvc = str(tmp_path / "pvc")
    assert launch.argv == [
        str(tool), "train", "--result-file", str(tmp_path / "term"), "--artifacts",
        f"file://{pvc}", "--out", f"{pvc}/out/x", "--host", "127.10.0.3",
    ]
    assert launch.env["OUT"] == f"{pvc}/out"
    assert launch.env["BIND"] == "127.10.0.3:3000"
    assert launch.cwd == f"{pvc}/work"


def test_launch_without_any_command_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ignores images"):
        podspec.launch({"name": "main"}, {}, [], "127.10.0.3", "/nonexistent", "/")


def test_sub_path_mounts_point_inside_the_volume(tmp_path: Path) -> None:
    container = {"name": "main", "volumeMounts": [
        {"name": "store", "mountPath": "/models", "subPath": "iris"}],
        "terminationMessagePath": "/tmp/result.json"}
    pairs = podspec.mounts(container, {"store": tmp_path}, tmp_path / "t")
    assert pairs == [("/models", str(tmp_path / "iris")), ("/tmp/result.json", str(tmp_path / "t"))]


def test_a_tmp_volume_becomes_tmpdir(tmp_path: Path) -> None:
    container = {"name": "main", "command": ["/bin/true"],
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    pairs = podspec.mounts(container, {"tmp": tmp_path / "tmp"}, tmp_path / "t")
    env = {"HOME": "/tmp"}
    launch = podspec.launch(container, env, pairs, "127.10.0.3", "/nonexistent", "/")
    assert launch.env == {"HOME": str(tmp_path / "tmp"), "TMPDIR": str(tmp_path / "tmp")}
    kept = podspec.launch(container, {"TMPDIR": "/var/tmp"}, pairs, "ip", "/nonexistent", "/")
    assert kept.env == {"TMPDIR": "/var/tmp"}


def test_reported_paths_are_restored_and_local_paths_never_rewritten_twice() -> None:
    pairs = [("/models", "/state/pvc/ml/artifacts"), ("/tmp", "/state/pods/u/volumes/tmp"),
             ("/dev/termination-log", "/state/pods/u/containers/main/termination-log")]
    report = '{"artifact": "file:///state/pvc/ml/artifacts/iris/v1.bentomodel", "x": "/state/x"}'
    assert podspec.restore_paths(report, pairs) == (
        '{"artifact": "file:///models/iris/v1.bentomodel", "x": "/state/x"}')
    # A state path that reaches a pod (a sandbox path passed along) is not rewritten again,
    # even though the pod mounts /tmp and the state directory lives under it.
    tmp_pairs = [("/tmp", "/tmp/state/pods/u/volumes/tmp")]
    value = "file:///tmp/state/pvc/ml/artifacts/v1.bentomodel"
    assert podspec.rewrite_paths(value, tmp_pairs, keep=("/tmp/state",)) == value
    assert podspec.rewrite_paths("/tmp/x", tmp_pairs, keep=("/tmp/state",)) == (
        "/tmp/state/pods/u/volumes/tmp/x")
