# syntax=docker/dockerfile:1
# The operator image: `modelops operator` (Kopf) as uid 65532 on a read-only root filesystem.
#   docker build -f images/operator.Dockerfile -t modelops/operator:0.1.0 .
# The chart (charts/modelops) runs it with `operator --liveness http://0.0.0.0:8080/healthz`.
# Pinned base: the Python minor the project declares (pyproject: >=3.11,<3.12) at an exact patch
# release and Debian release; pin the digest too (`python:3.11.11-slim-bookworm@sha256:...`) where
# your registry policy asks for it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelops
WORKDIR /src
# Only what the distribution is built from (pyproject.toml maps each folder to its package).
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY training/ training/
COPY serving/ serving/
# The one distribution, from wheels wherever one exists (neither stage has a compiler, so a
# dependency that needs one fails the build instead of slipping in); then the installers go, so
# the run stage holds no build tools.
RUN /opt/modelops/bin/pip install --prefer-binary . \
 && /opt/modelops/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/modelops/bin/modelops --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelops operator" \
      org.opencontainers.image.description="Kopf operator running the ML life cycle of Model resources" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip and setuptools are build tools too.
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null; rm -rf /root/.cache
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
