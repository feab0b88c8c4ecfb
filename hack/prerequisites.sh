#!/usr/bin/env bash
# Checks, and installs where it can, what `make demo` and `make test` need from the machine:
# Python 3.11 with venv, Go >= the version the tools modules name, and a few Debian packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing_debs=()
command -v pgrep >/dev/null || missing_debs+=(procps)
command -v curl >/dev/null || missing_debs+=(curl)
command -v git >/dev/null || missing_debs+=(git)
if [ ${#missing_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "prerequisites: installing Debian packages: ${missing_debs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
  else
    echo "prerequisites: please install: ${missing_debs[*]}" >&2; exit 1
  fi
fi

if ! python3 -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "prerequisites: python3 must be Python 3.11 with the venv module (found: $(python3 --version 2>&1))" >&2
  exit 1
fi

need=$(awk '/^go /{print $2; exit}' "$here/tools/kubernetes/go.mod")
if ! command -v go >/dev/null; then
  echo "prerequisites: Go $need or newer is needed to build the control plane (none on PATH)" >&2
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "prerequisites: Go $need or newer is needed to build the control plane (found $have)" >&2
  exit 1
fi
