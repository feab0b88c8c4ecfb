"""The node's images, built on this machine: no registry is reachable, so nothing is pulled.

- **The base**: Debian bookworm with its Python 3.11 and venv module, made with `debootstrap`
  from Debian's package mirror, the machine's CA certificates added (so that pip inside a build
  trusts what the machine trusts), imported into podman's store as `BASE_IMAGE`. The project's
  Dockerfiles take it through their `PYTHON_IMAGE` build argument; a user builds the same files
  on the official `python:3.11-slim` image.
- **The pause image** of every pod sandbox: Kubernetes' `pause.c` from the `k8s.io/kubernetes`
  module that the Go build already downloaded, compiled statically, tagged as containerd expects.
- **The project's images**, `images/runtime.Dockerfile` and `images/operator.Dockerfile`, built
  with podman (`--isolation chroot`, pip reaching PyPI through the host's network) and tagged as
  the chart names them (`docker.io/modelops/<name>:<appVersion>`).

Each is built only when its inputs changed: an image carries a label with the hash of what it
was built from (the recipe, the Dockerfile and every file it copies, the base image's ID), and a
build whose hash matches is skipped. For the node, each image is saved once per image ID as an
archive under `~/.cache/modelops/images/`, which `Containerd.import_image` reads.

    python -m modelops_sandbox.images          # what `make images` runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from modelops_sandbox import tools

REPO = tools.REPO
SOURCE_LABEL = "dev.modelops.source"
BASE_IMAGE = "localhost/modelops-python:3.11-bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
MACHINE_CA_DIR = Path("/usr/local/share/ca-certificates")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# What the project's images copy (images/*.Dockerfile): everything else is outside their context.
CONTEXT = (
    "pyproject.toml",
    "README.md",
    "hack/constraints.txt",
    "api",
    "operator",
    "training",
    "serving",
)
Say = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built; the message carries the tail of the build's output."""


@dataclass(frozen=True)
class ProjectImage:
    name: str  # runtime, operator

    @property
    def dockerfile(self) -> Path:
        return REPO / "images" / f"{self.name}.Dockerfile"

    @property
    def reference(self) -> str:
        return f"docker.io/modelops/{self.name}:{app_version()}"


PROJECT_IMAGES = (ProjectImage("runtime"), ProjectImage("operator"))


def app_version() -> str:
    """The chart's appVersion: the tag its values give both images by default."""
    for line in (REPO / "charts" / "modelops" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise ImageError("charts/modelops/Chart.yaml has no appVersion")


def images_dir() -> Path:
    return tools.cache_dir() / "images"


def _run(argv: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ImageError(f"{what} failed ({result.returncode}):\n{tail}")
    return result  # type: ignore[no-any-return]


def _label(reference: str) -> str | None:
    """The source hash an image in podman's store was built from; None when it is absent."""
    result = subprocess.run(
        ["podman", "image", "inspect", reference], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0].get("Labels") or {}
    return str(labels.get(SOURCE_LABEL, ""))


def image_id(reference: str) -> str:
    out = _run(["podman", "image", "inspect", "--format", "{{.Id}}", reference], "inspect")
    return out.stdout.strip()


def _hash(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _context_files() -> list[Path]:
    files: list[Path] = []
    for entry in CONTEXT:
        path = REPO / entry
        if path.is_file():
            files.append(path)
            continue
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                files.append(file)
    return files


def _base_recipe() -> bytes:
    certs = sorted(MACHINE_CA_DIR.glob("*.crt")) if MACHINE_CA_DIR.is_dir() else []
    lines = [DEBIAN_SUITE, DEBIAN_MIRROR, *BASE_PACKAGES, *(c.read_text() for c in certs)]
    return "\n".join(lines).encode()


def ensure_base(say: Say) -> None:
    """The locally made Python base, when it is missing or its recipe changed."""
    recipe = _hash([_base_recipe()])
    if _label(BASE_IMAGE) == recipe:
        return
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is missing: run hack/prerequisites.sh")
    say(f"images: making the Python base with debootstrap ({DEBIAN_SUITE}; about 2 minutes)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelops-base-", dir=tools.cache_dir()) as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            "debootstrap",
        )
        if MACHINE_CA_DIR.is_dir():
            target = root / MACHINE_CA_DIR.relative_to("/")
            target.mkdir(parents=True, exist_ok=True)
            for cert in MACHINE_CA_DIR.glob("*.crt"):
                shutil.copy(cert, target / cert.name)
            _run(["chroot", str(root), "update-ca-certificates"], "update-ca-certificates")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["python3"]',
                "--change",
                f"ENV PIP_CERT={bundle}",
                "--change",
                f"ENV SSL_CERT_FILE={bundle}",
                "--change",
                f"LABEL {SOURCE_LABEL}={recipe}",
                "-",
                BASE_IMAGE,
            ],
            "podman import of the base",
            stdin=tar.stdout,
        )
        tar.wait()
    say(f"images: base {BASE_IMAGE} made in {time.monotonic() - started:.0f}s")


def _pause_source() -> Path:
    """pause.c of the pinned Kubernetes release, from the Go module cache (downloaded if absent)."""
    version = tools.versions()["KUBERNETES_VERSION"]
    out = _run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        "go mod download k8s.io/kubernetes",
        cwd=tools.TOOLS_DIR / "kubernetes",
    )
    return Path(json.loads(out.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"


def ensure_pause(say: Say) -> None:
    source = _pause_source()
    recipe = _hash([source.read_bytes()])
    if _label(PAUSE_IMAGE) == recipe:
        return
    say("images: compiling the pause image from Kubernetes' pause.c")
    with tempfile.TemporaryDirectory(prefix="modelops-pause-") as tmp:
        binary = Path(tmp) / "pause"
        _run(["gcc", "-Os", "-static", "-o", str(binary), str(source)], "gcc pause.c")
        _run(["strip", str(binary)], "strip pause")
        tar = subprocess.Popen(["tar", "-C", tmp, "-c", "pause"], stdout=subprocess.PIPE)
        _run(
            [
                "podman",
                "import",
                "--change",
                'ENTRYPOINT ["/pause"]',
                "--change",
                "USER 65535:65535",
                "--change",
                f"LABEL {SOURCE_LABEL}={recipe}",
                "-",
                PAUSE_IMAGE,
            ],
            "podman import of pause",
            stdin=tar.stdout,
        )
        tar.wait()


def source_hash(image: ProjectImage) -> str:
    files = [image.dockerfile, *_context_files()]
    names = "\n".join(str(f.relative_to(REPO)) for f in files).encode()
    return _hash([names, image_id(BASE_IMAGE).encode(), *(f.read_bytes() for f in files)])


def ensure_project(image: ProjectImage, say: Say) -> None:
    wanted = source_hash(image)
    if _label(image.reference) == wanted:
        say(f"images: {image.reference} is up to date")
        return
    say(f"images: building {image.reference} (minutes when its dependencies change)")
    previous = image_id(image.reference) if _label(image.reference) is not None else None
    started = time.monotonic()
    _run(
        [
            "podman",
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--build-arg",
            f"PYTHON_IMAGE={BASE_IMAGE}",
            "--label",
            f"{SOURCE_LABEL}={wanted}",
            "-f",
            str(image.dockerfile),
            "-t",
            image.reference,
            str(REPO),
        ],
        f"podman build of {image.reference}",
    )
    say(f"images: built {image.reference} in {time.monotonic() - started:.0f}s")
    if previous and previous != image_id(image.reference):
        # The image it replaces is untagged now: remove it (and its layers) unless something
        # still uses it. Older build stages stay as cache; `podman image prune` reclaims them.
        subprocess.run(["podman", "rmi", previous], capture_output=True, check=False)


def archive(reference: str) -> Path:
    """The image saved as a docker archive, once per image ID; older archives of it go."""
    ident = image_id(reference)[:16]
    stem = reference.replace("/", "_").replace(":", "_")
    path = images_dir() / f"{stem}-{ident}.tar"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{stem}-*.tar"):
        old.unlink()
    tmp = path.with_suffix(".tmp")
    _run(["podman", "save", "--format", "docker-archive", "-o", str(tmp), reference], "podman save")
    tmp.replace(path)
    return path


def ensure_all(say: Say) -> dict[str, Path]:
    """Every image the node needs, built when missing or stale: reference -> archive."""
    if shutil.which("podman") is None:
        raise ImageError("podman is missing: run hack/prerequisites.sh")
    ensure_base(say)
    ensure_pause(say)
    for image in PROJECT_IMAGES:
        ensure_project(image, say)
    return {reference: archive(reference) for reference in (PAUSE_IMAGE, *references())}


def references() -> list[str]:
    return [image.reference for image in PROJECT_IMAGES]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_sandbox.images",
        description="Build the sandbox node's images (the Python base, pause, runtime, operator) "
        "when their sources changed, and save them for import into containerd.",
    )
    parser.parse_args(argv)
    if os.geteuid() != 0:
        say("images: podman and debootstrap need root here")
        return 1
    try:
        for path in ensure_all(say).values():
            say(f"images: {path.name} ({path.stat().st_size / 1e6:.0f} MB)")
    except ImageError as error:
        say(f"images: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
