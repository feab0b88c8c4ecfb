"""Benchmark: the artifact store as a claim (`file://`, a directory) against S3 (`s3://`, a real
SeaweedFS on loopback), for a model whose `.bentomodel` archive is about 50 MB.

    .venv/bin/python bench/artifact_store.py [--rounds 3] [--rows 69000] [--features 100]
        [--smoke] [--write-docs docs/benchmarks.md]

`modelops train` fits a KNeighborsClassifier (algorithm "brute", which keeps its training rows and
nothing else) on synthetic classification data and archives it; 65,550 training rows of 100
float64 features make a ~50 MB archive. (A random forest's archive would need ~350 MB of pickled
trees, which BentoML's xz compresses about 7 to 1, and minutes of compression per export.) The
pipeline and model.yaml are read back from that archive, and each round then measures, for each
store:

1. upload: `packaging.save_and_export`, training's own export, into a fresh root of the store.
   Only the store part is timed: from the end of BentoML's xz compression of the archive (the same
   for both stores, reported apart) to the return of save_and_export — for file://, copying the
   archive into the directory under a temporary name, fsync and rename; for s3://, copying it to
   the local scratch directory and uploading it (s3fs: one PUT up to its 50 MiB block, a multipart
   upload over). The PUT alone is packaging's own log line.
2. download: what serving does before it imports the archive — nothing for file:// (the archive is
   imported where it lies); for s3://, `artifact.download` to a local file.
3. serving start: a real `bentoml serve modelops_serving.service:ModelService` process with its
   own fresh BENTOML_HOME, from the start of the process to `/readyz` answering 200 (download,
   import — xz decompression into the pod-local model store — and loading the pipeline included).

The stores alternate which goes first from one round to the next. These are processes on this
machine, not pods: a pod adds the kubelet's and containerd's own start, equal for both stores.

With --write-docs the "## Artifact store: claim against S3" section of that file is replaced (the
rest is kept); --smoke runs one round on a small model (a few MB), to check that the benchmark runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchdocs import write_section

SECTION = "## Artifact store: claim against S3"
BIN = Path(sys.executable).parent
MODEL, VERSION, NAMESPACE = "bench", "v1", "default"
ESTIMATOR = "sklearn.neighbors.KNeighborsClassifier"
BUCKET = "models"
READY_TIMEOUT = 600.0


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Trained:
    """The archive `modelops train` wrote, and what save_and_export needs to write it again."""

    archive: Path
    pipeline: Any
    metadata: dict[str, Any]
    labels: dict[str, str]
    train_rows: int


@dataclass(frozen=True)
class Upload:
    uri: str
    compress: float  # BentoML's xz compression of the archive (the same for both stores)
    store: float  # from the end of the compression to save_and_export's return
    put: float | None  # s3://: the PUT alone (packaging's log line)
    size: int


def train(work: Path, rows: int, features: int) -> Trained:
    """Run `modelops train` once (to a directory) and read the pipeline and model.yaml back."""
    spec = {
        "dataset": {
            "uri": f"synthetic:classification?rows={rows}&features={features}&seed=1",
            "target": "target",
        },
        "pipeline": {"scaling": "none"},
        "estimator": {"class": ESTIMATOR, "params": {"algorithm": "brute"}},
        "validation": {"testSize": 0.05, "randomState": 42},
    }
    (work / "spec.json").write_text(json.dumps(spec))
    say(f"modelops train: {rows} rows x {features} features, {ESTIMATOR.rsplit('.', 1)[1]}")
    done = subprocess.run(
        [str(BIN / "modelops"), "train", "--spec", str(work / "spec.json"), "--model", MODEL,
         "--version", VERSION, "--artifacts", (work / "trained").as_uri(),
         "--result-file", str(work / "result.json")],
        env={**os.environ, "BENTOML_HOME": str(work / "train-home")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"modelops train failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    archive = Path(result["artifact"].removeprefix("file://"))
    say(f"trained in {result['seconds']['total']:.1f}s: {archive.stat().st_size:,} bytes")

    import joblib
    import yaml

    unpacked = work / "unpacked"
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(unpacked, members=[tar.getmember(f"./{n}") for n in ("model.yaml",
                                                                              "pipeline.pkl")],
                       filter="data")  # fmt: skip
    info = yaml.safe_load((unpacked / "model.yaml").read_text())
    pipeline = joblib.load(unpacked / "pipeline.pkl")
    return Trained(
        archive, pipeline, dict(info["metadata"]), dict(info["labels"]), result["rows"]["train"]
    )


class Marks:
    """The end of BentoML's compression of an archive, and packaging's upload time, as they happen
    in this process: BentoML's `_compress` is wrapped, packaging's log line is read."""

    def __init__(self) -> None:
        self.compress: list[tuple[float, float]] = []  # (start, end)
        self.put: list[float] = []

    @contextmanager
    def installed(self) -> Iterator[Marks]:
        from bentoml._internal.exportable import Exportable

        original = Exportable._compress
        marks = self

        def timed(self: Any, path: str, output_format: str) -> str:
            start = time.perf_counter()
            out = original(self, path, output_format)
            marks.compress.append((start, time.perf_counter()))
            return out

        class PutLine(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if str(record.msg).startswith("uploaded %d bytes"):
                    marks.put.append(float(record.args[2]))  # type: ignore[index]

        handler = PutLine()
        logger = logging.getLogger("modelops.train")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        Exportable._compress = timed  # type: ignore[method-assign]
        try:
            yield self
        finally:
            Exportable._compress = original  # type: ignore[method-assign]
            logger.removeHandler(handler)


def upload(trained: Trained, root: str, marks: Marks) -> Upload:
    """Training's export of the archive to the store under `root`, timed."""
    from modelops_training import packaging

    store = packaging.ArtifactStore.parse(root)
    marks.compress.clear()
    marks.put.clear()
    uri = packaging.save_and_export(
        trained.pipeline,
        tag=f"{MODEL}:{VERSION}",
        metadata=trained.metadata,
        labels=trained.labels,
        store=store,
        model=MODEL,
        version=VERSION,
    )
    end = time.perf_counter()
    if len(marks.compress) != 1:
        sys.exit(f"expected one compression of the archive, saw {len(marks.compress)}")
    start, compressed = marks.compress[0]
    if store.location is not None:
        if len(marks.put) != 1:
            sys.exit("packaging logged no upload time (its 'uploaded ... in ...s' line)")
        from modelops_serving import artifact

        size = int(artifact.object_filesystem().size(artifact.object_path(uri)))
    else:
        size = store.path(MODEL, VERSION).stat().st_size
    put = marks.put[0] if store.location is not None else None
    return Upload(uri, compressed - start, end - compressed, put, size)


def download(uri: str, target: Path) -> float:
    """Serving's download of an s3:// archive to a local file, timed; the file is removed."""
    from modelops_serving import artifact

    started = time.perf_counter()
    artifact.download(uri, target)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def serving_start(work: Path, name: str, uri: str) -> float:
    """Seconds from starting `bentoml serve` to its /readyz answering 200 (the process stopped)."""
    from modelops_api import contract
    from modelops_sandbox.processes import spawn

    home = work / f"home-{name}"
    home.mkdir()
    credentials = work / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / contract.CREDENTIAL_TOKEN).write_text("bench-token")
    (credentials / contract.CREDENTIAL_KEY).write_text("bench-signing-key")
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MODELOPS_ARTIFACT": uri,
        "MODELOPS_MODEL": MODEL,
        "MODELOPS_VERSION": VERSION,
        "MODELOPS_TRACK": "stable",
        "MODELOPS_HOST": "127.0.0.1",
        contract.ENV_CREDENTIALS: str(credentials),
    }
    argv = [str(BIN / "bentoml"), *contract.SERVE_COMMAND[1:]]
    log = work / f"serve-{name}.log"
    ready = f"http://127.0.0.1:{port}/readyz"
    started = time.perf_counter()
    process = spawn(log.stem, [*argv, "--port", str(port)], log, env=env, cwd=work)
    try:
        while time.perf_counter() - started < READY_TIMEOUT:
            if not process.alive():
                sys.exit(f"bentoml serve ({name}) exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"bentoml serve ({name}) not ready in {READY_TIMEOUT:.0f}s:\n"
                 f"{log.read_text()[-3000:]}")  # fmt: skip
    finally:
        process.stop(20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def object_store_environment(store: Any, work: Path) -> None:
    """Point botocore (training's and serving's s3fs, and the servers started) at the store, as a
    pod's environment does; no AWS configuration file of this machine is read."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_CONFIG_FILE": str(work / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
            "AWS_ACCESS_KEY_ID": store.access_key,
            "AWS_SECRET_ACCESS_KEY": store.secret_key,
            "AWS_ENDPOINT_URL": store.endpoint_url,
            "AWS_REGION": store.region,
        }
    )


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from modelops_sandbox.objectstore import ObjectStore

    # In-process packaging stages and compresses under BENTOML_HOME, as `modelops train` does.
    os.environ["BENTOML_HOME"] = str(work / "bench-home")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    scratch = work / "bench-home" / "tmp"
    scratch.mkdir(parents=True)
    tempfile.tempdir = str(scratch)
    trained = train(work, args.rows, args.features)
    runs: dict[str, dict[str, list[float]]] = {"file": {}, "s3": {}}
    sizes: list[int] = []

    def note(kind: str, what: str, value: float | None) -> None:
        if value is not None:
            runs[kind].setdefault(what, []).append(value)

    with ObjectStore(work / "objectstore", progress=say) as store, Marks().installed() as marks:
        object_store_environment(store, work)
        store.create_bucket(BUCKET)
        uid = str(uuid.uuid4())
        for r in range(1, args.rounds + 1):
            roots = {
                "file": (work / "claim" / f"r{r}" / NAMESPACE / uid).as_uri(),
                "s3": f"s3://{BUCKET}/r{r}/{NAMESPACE}/{uid}",
            }
            order: list[str] = ["file", "s3"] if r % 2 else ["s3", "file"]
            uris: dict[str, str] = {}
            for kind in order:
                done = upload(trained, roots[kind], marks)
                uris[kind] = done.uri
                sizes.append(done.size)
                note(kind, "compress", done.compress)
                note(kind, "upload", done.store)
                note(kind, "put", done.put)
                say(f"round {r} upload {kind}: {done}")
            took = download(uris["s3"], work / f"download-{r}" / f"{VERSION}.bentomodel")
            note("s3", "download", took)
            say(f"round {r} download s3: {took:.2f}s")
            for kind in order:
                took = serving_start(work, f"{kind}-{r}", uris[kind])
                note(kind, "serve", took)
                say(f"round {r} serving start {kind}: {took:.2f}s")
    # The archives differ by a few hundred bytes (the tar headers' times, compressed).
    if max(sizes) > 1.01 * min(sizes):
        sys.exit(f"the stores hold archives of different sizes: {sorted(sizes)}")
    size = int(statistics.median(sizes))
    return {"runs": runs, "size": size, "train_rows": trained.train_rows}


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f} to {max(values):.2f})"


def render(args: argparse.Namespace, result: dict[str, Any], before: str, after: str) -> str:
    runs, size = result["runs"], result["size"]
    megabytes = size / 1e6

    def rate(seconds: list[float]) -> str:
        return f"{megabytes / statistics.median(seconds):.0f} MB/s"

    command = (
        f".venv/bin/python bench/artifact_store.py --rounds {args.rounds} --rows {args.rows} "
        f"--features {args.features} --write-docs docs/benchmarks.md"
    )
    file, s3 = runs["file"], runs["s3"]
    lines = [
        SECTION,
        "",
        f"One model archive of {megabytes:.1f} MB ({size:,} bytes: a KNeighborsClassifier that "
        f"keeps {result['train_rows']:,} training rows of {args.features} float64 features, "
        "fitted by `modelops train` on synthetic data) written to and served from the two kinds "
        "of artifact store: a directory, as the ReadWriteMany claim mounted at /models "
        "(`file://`), and S3 (`s3://`, a real SeaweedFS on loopback, through s3fs as in a pod). "
        f"Median of {args.rounds} rounds (range in brackets), seconds, all measured in one run "
        "of:",
        "",
        "```",
        command,
        "```",
        "",
        "| step | claim (`file://`) | S3 (`s3://`) |",
        "| --- | ---: | ---: |",
        f"| upload: training's export, the store part | {spread(file['upload'])} "
        f"| {spread(s3['upload'])} |",
        f"| of which the PUT | — | {spread(s3['put'])} ({rate(s3['put'])}) |",
        f"| download before the import | none: imported where it lies "
        f"| {spread(s3['download'])} ({rate(s3['download'])}) |",
        f"| serving start, process start to `/readyz` 200 | {spread(file['serve'])} "
        f"| {spread(s3['serve'])} |",
        "",
        "- *upload*: `packaging.save_and_export`, in process, timed from the end of BentoML's xz "
        "compression of the archive to its return. For `file://`: the archive copied into the "
        "directory under a hidden temporary name, fsync, rename, fsync of the directory; for "
        "`s3://`: copied to the local scratch directory, then uploaded to its final key (one PUT "
        "below s3fs's 50 MiB block, a multipart upload above). The compression before it is the "
        "same for both and dominates the export: "
        f"{spread(file['compress'] + s3['compress'])} s.",
        "- *download*: `modelops_serving.artifact.download`, what the runtime does before it "
        "imports an `s3://` archive; a `file://` archive is imported straight from the claim.",
        "- *serving start*: a real `bentoml serve modelops_serving.service:ModelService` "
        "process with a fresh BENTOML_HOME, from its start to `/readyz` answering 200: Python and "
        "BentoML starting, the download (S3), the import (xz decompression into the pod-local "
        "model store) and loading the pipeline. These are **processes on this machine, not "
        "pods**: a pod adds the kubelet's and containerd's own start (image, sandbox, probes), "
        "the same for both stores.",
        "- The claim here is a local directory on the same disk as SeaweedFS's volumes. A real "
        "ReadWriteMany claim (NFS, CephFS, EFS) puts its network under every write of training "
        "and every read of the import, so its numbers are a floor; S3's go through the HTTP "
        "stack on loopback, without a network's latency or bandwidth.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, shared with other work; load average before the run: "
        f"{before}; after: {after}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=69_000, help="rows of the synthetic data")
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--smoke", action="store_true", help="one round, a small model: that it runs")
    p.add_argument("--write-docs", type=Path)
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.rows = 1, 2_000
    before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="modelops-bench-store-") as tmp:
        result = measure(args, Path(tmp))
        tempfile.tempdir = None
    after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    section = render(args, result, before, after)
    print(section)
    if args.write_docs and not args.smoke:
        write_section(args.write_docs, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
