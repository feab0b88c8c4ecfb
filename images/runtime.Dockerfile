# syntax=docker/dockerfile:1
# The runtime image: one image for both halves of a model's life, as the operator runs it
# (docs/runtime-contract.md):
#   training Job        command: ["modelops", "train"]  (operator/modelops_operator/training.py)
#   serving Deployment  command: ["bentoml", "serve", "modelops_serving.service:ModelService"]
#                                                       (operator/modelops_operator/children.py)
#   docker build -f images/runtime.Dockerfile -t modelops/runtime:0.1.0 .
# Runs as uid 65532 on a read-only root filesystem: the operator mounts the only writable paths
# (/tmp, BENTOML_HOME=/home/bentoml, and the artifact claim at /models).
# PYTHON_IMAGE is any Debian-based image with Python 3.11 and its venv module as `python`; the
# default is the official one (the sandbox builds the same file on a base made locally).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelops
WORKDIR /src
# The dependencies first: the base ones (the `modelops` command) and the `training` and `serving`
# extras, in a layer of their own that changes only with pyproject.toml; from
# wheels wherever one exists: scikit-learn, numpy, pandas and BentoML ship manylinux wheels, so no
# compiler is needed here and none reaches the run stage. A current pip first: it reads a wheel's
# dependencies from the index's metadata instead of downloading each candidate wheel, which the
# base's pip does for every botocore that s3fs's resolution looks at. The versions are those of
# hack/constraints.txt, so the resolver has nothing to search.
COPY pyproject.toml README.md hack/constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/modelops/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(dict.fromkeys(p['dependencies'] + [r for e in ['training', 'serving'] for r in p['optional-dependencies'][e]])))" > /tmp/requirements.txt \
 && /opt/modelops/bin/pip install --upgrade "pip>=24.3" \
 && /opt/modelops/bin/pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt
# Then the distribution itself (pyproject.toml finds each package in its folder).
COPY api/ api/
COPY operator/ operator/
COPY training/ training/
COPY serving/ serving/
# The installers go, so the run stage holds no build tools. The bytecode is compiled now, because
# the root filesystem is read-only at run time.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/modelops/bin/pip install --no-deps . \
 && /opt/modelops/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/modelops/bin/python -m compileall -q /opt/modelops/lib \
 && /opt/modelops/bin/modelops --help >/dev/null \
 && /opt/modelops/bin/bentoml --version >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelops runtime" \
      org.opencontainers.image.description="Trains (modelops train) and serves (bentoml serve) modelops models" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for uid 65532: programs that look the user up (getpass) find it.
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null; rm -rf /root/.cache \
 && groupadd --gid 65532 modelops \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modelops \
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
