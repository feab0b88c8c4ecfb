#!/usr/bin/env bash
# Checks, and installs where it can, what `make demo` and `make test` need from the machine:
# Python 3.11 with venv, Go >= the version the tools modules name, and Debian packages: the
# sandbox node's runc, CNI plugins, iptables/nftables and conntrack, podman and debootstrap to
# build its images, gcc and a static libc for the pause image, headless Chromium to open the HTML
# page `modelops report` writes in its tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# command -> Debian package
declare -A wanted=(
  [pgrep]=procps [curl]=curl [git]=git
  [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins [conntrack]=conntrack
  [iptables]=iptables [nft]=nftables [ip]=iproute2 [socat]=socat
  [podman]=podman [debootstrap]=debootstrap [gcc]=gcc [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
  [chromium]=chromium
)
missing_debs=()
for thing in "${!wanted[@]}"; do
  if [[ $thing == /* ]]; then [ -e "$thing" ] && continue; else command -v "$thing" >/dev/null && continue; fi
  missing_debs+=("${wanted[$thing]}")
done
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
