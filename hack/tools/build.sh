#!/usr/bin/env bash
# Builds the pinned Kubernetes components, containerd, etcd, helm, Prometheus, SeaweedFS and Traefik
# from the Go module proxy into a cache outside the repository, skipping every binary that is already
# there.
#
#   hack/tools/build.sh [component ...]
#
# components: kubernetes containerd etcd helm prometheus vegeta seaweedfs traefik (default: all)
#
# The cache is $MODELOPS_CACHE (default ~/.cache/modelops); each component lands in
# tools/<component>-<version>/bin/. Versions come from versions.env, the modules from the go.mod files
# beside this script (regenerate them with pin.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
cache=${MODELOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops}
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

build() { # component version binary package ldflags
  local component=$1 version=$2 binary=$3 package=$4 ldflags=$5
  local dest="$cache/tools/$component-$version/bin"
  if [ -x "$dest/$binary" ]; then
    echo "tools: $binary $version is cached ($dest)"
    return
  fi
  mkdir -p "$dest"
  echo "tools: building $binary $version from the Go module proxy (minutes on a cold cache) ..."
  local start=$SECONDS tmp="$dest/.$binary.tmp.$$"
  (cd "$here/$component" && go build -trimpath -o "$tmp" -ldflags "-s -w $ldflags" $6 "$package")
  mv -f "$tmp" "$dest/$binary"
  echo "tools: built $binary in $((SECONDS - start))s ($(du -h "$dest/$binary" | cut -f1))"
}

kubernetes() {
  local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  local cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    build kubernetes "$v" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$ld" ""
  done
}
containerd() {
  # The graph drivers that need C libraries are left out (the node uses the overlayfs snapshotter).
  local v=$CONTAINERD_VERSION cmd
  local ld="-X github.com/containerd/containerd/v2/version.Version=$v"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    build containerd "$v" "$cmd" "github.com/containerd/containerd/v2/cmd/$cmd" "$ld" \
      "-tags=no_btrfs,no_devmapper,no_zfs"
  done
}
etcd() { build etcd "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3 "" ""; }
helm() {
  build helm "$HELM_VERSION" helm helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ""
}
prometheus() {
  local release=${PROMETHEUS_VERSION#v0.}  # v0.316.0 -> 3.16.0
  release="${release:0:1}.${release:1}"
  # Only the Kubernetes service discovery is compiled in; the web UI's assets are left out (the
  # HTTP API is what the operator and the sandbox use).
  build prometheus "$PROMETHEUS_VERSION" prometheus github.com/prometheus/prometheus/cmd/prometheus \
    "-X github.com/prometheus/common/version.Version=$release" \
    "-tags=remove_all_sd,enable_kubernetes_sd"
}

# The benchmarks' load generator (closed-loop and fixed-rate HTTP load).
vegeta() { build vegeta "$VEGETA_VERSION" vegeta github.com/tsenart/vegeta/v12 "" ""; }

# The S3-compatible object store (one `weed` binary: master, volume, filer and S3 gateway). Its
# optional filer stores and backends that need build tags (rocksdb, ydb, tikv, rclone, ...) stay out.
seaweedfs() {
  local commit=${SEAWEEDFS_VERSION##*-}
  build seaweedfs "$SEAWEEDFS_VERSION" weed github.com/seaweedfs/seaweedfs/weed \
    "-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${commit:0:8}" ""
}

# The sandbox's Gateway API implementation (one `traefik` binary). Traefik has no build tags that
# leave providers out; its web UI's assets are not in the module (the dashboard is not used).
traefik() {
  build traefik "$TRAEFIK_VERSION" traefik github.com/traefik/traefik/v3/cmd/traefik \
    "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" ""
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kubernetes containerd etcd helm prometheus vegeta seaweedfs traefik)
for c in "${components[@]}"; do
  case $c in
    kubernetes|containerd|etcd|helm|prometheus|vegeta|seaweedfs|traefik) "$c" ;;
    *) echo "tools: unknown component '$c' (kubernetes, containerd, etcd, helm, prometheus, vegeta, seaweedfs, traefik)" >&2; exit 2 ;;
  esac
done
