# The two commands of the README, and the steps they are made of. Each step installs what it needs
# and skips what is already there.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Components of hack/tools that the tests and the demo start.
TOOLS := kubernetes containerd etcd helm prometheus vegeta seaweedfs traefik
PYTEST_ARGS ?=

.PHONY: demo test api lint typecheck pytest unit integration e2e tools images venv prerequisites

demo: venv tools images ## a local cluster with a real node, the operator's chart, the example's loop
	$(PYTHON) -m modelops_sandbox.demo $(ARGS)

test: lint typecheck pytest ## ruff, import contracts, mypy and every test tier

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTHON) -m modelops_api --check

api: venv ## write the CRDs and the API tables of docs/api.md from api/modelops_api/spec.py
	$(PYTHON) -m modelops_api

typecheck: venv
	$(VENV)/bin/mypy -p modelops_api -p modelops_operator -p modelops_training -p modelops_serving -p modelops_sandbox

pytest: venv tools images
	$(PYTHON) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PYTHON) -m pytest -m unit $(PYTEST_ARGS)

integration: venv tools images
	$(PYTHON) -m pytest -m integration $(PYTEST_ARGS)

e2e: venv tools images
	$(PYTHON) -m pytest -m e2e $(PYTEST_ARGS)

tools: prerequisites ## Go-built Kubernetes, containerd, etcd, helm, Prometheus, SeaweedFS, Traefik, vegeta (cached)
	hack/tools/build.sh $(TOOLS)

images: venv ## the node's images: a Debian Python base, pause, runtime, operator (cached by content)
	$(PYTHON) -m modelops_sandbox.images

venv: prerequisites $(STAMP)

$(STAMP): pyproject.toml sandbox/pyproject.toml hack/constraints.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c hack/constraints.txt -e '.[dev]' -e ./sandbox
	@touch $(STAMP)

prerequisites:
	@hack/prerequisites.sh
