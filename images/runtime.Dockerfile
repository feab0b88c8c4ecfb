# syntax=docker/dockerfile:1
# The runtime image: one image for both halves of a model's life, as the operator runs it
# (docs/runtime-contract.md):
#   training Job        command: ["modelops", "train"]  (operator/training.py)
#   serving Deployment  command: ["bentoml", "serve", "modelops_serving.service:ModelService"]
#                                                       (operator/children.py)
#   docker build -f images/runtime.Dockerfile -t modelops/runtime:0.1.0 .
# Runs as uid 65532 on a read-only root filesystem: the operator mounts the only writable paths
# (/tmp, BENTOML_HOME=/home/bentoml, and the artifact claim at /models).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelops
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY training/ training/
COPY serving/ serving/
# Wheels wherever one exists: scikit-learn, numpy, pandas and BentoML ship manylinux wheels, so no
# compiler is needed here and none reaches the run stage. The bytecode is compiled now, because the root
# filesystem is read-only at run time.
RUN /opt/modelops/bin/pip install --prefer-binary . \
 && /opt/modelops/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/modelops/bin/python -m compileall -q /opt/modelops/lib \
 && /opt/modelops/bin/modelops --help >/dev/null \
 && /opt/modelops/bin/bentoml --version >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelops runtime" \
      org.opencontainers.image.description="Trains (modelops train) and serves (bentoml serve) modelops models" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null; rm -rf /root/.cache \
 && mkdir -p /home/bentoml /models && chown 65532:65532 /home/bentoml /models
COPY --from=build /opt/modelops /opt/modelops
ENV PATH=/opt/modelops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BENTOML_HOME=/home/bentoml \
    BENTOML_DO_NOT_TRACK=true
USER 65532:65532
EXPOSE 3000
ENTRYPOINT ["modelops"]
CMD ["--help"]
