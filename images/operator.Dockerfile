# syntax=docker/dockerfile:1
# The operator image: `modelops operator` (Kopf) as uid 65532 on a read-only root filesystem.
#   docker build -f images/operator.Dockerfile -t modelops/operator:0.1.0 .
# The chart (charts/modelops) runs it with `operator --liveness http://0.0.0.0:8080/healthz`.
# Pinned base: the Python minor the images are built and tested with (pyproject allows 3.11 to
# 3.13) at an exact patch release and Debian release; pin the digest too
# (`python:3.11.11-slim-bookworm@sha256:...`) where your registry policy asks for it. PYTHON_IMAGE
# is any Debian-based image with Python 3.11 and its venv module as `python` (the sandbox builds
# the same file on a base made locally).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelops
WORKDIR /src
# The dependencies first: the base ones (the `modelops` command) and the `operator` extra, in a
# layer of their own that changes only with pyproject.toml; wheels wherever one exists
# (neither stage has a compiler, so a dependency that needs one fails the build instead of
# slipping in). A current pip first: it reads a wheel's dependencies from the index's metadata
# instead of downloading each candidate wheel, which the base's pip does for every botocore that
# s3fs's resolution looks at.
COPY pyproject.toml README.md hack/constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/modelops/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(dict.fromkeys(p['dependencies'] + [r for e in ['operator'] for r in p['optional-dependencies'][e]])))" > /tmp/requirements.txt \
 && /opt/modelops/bin/pip install --upgrade "pip>=24.3" \
 && /opt/modelops/bin/pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt
# Then the distribution itself; then the installers go, so the run stage holds no build tools.
COPY api/ api/
COPY operator/ operator/
COPY training/ training/
COPY serving/ serving/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/modelops/bin/pip install --no-deps . \
 && /opt/modelops/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/modelops/bin/python -m compileall -q /opt/modelops/lib \
 && /opt/modelops/bin/modelops --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelops operator" \
      org.opencontainers.image.description="Kopf operator running the ML life cycle of Model resources" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip and setuptools are build tools too. A named user for uid 65532: Kopf
# names the operator after it (getpass), which fails for a uid with no passwd entry.
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null; rm -rf /root/.cache \
 && groupadd --gid 65532 modelops \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modelops
COPY --from=build /opt/modelops /opt/modelops
ENV PATH=/opt/modelops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Non-root, numeric so that runAsNonRoot can verify it; the chart sets the same uid.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["modelops"]
CMD ["operator"]
