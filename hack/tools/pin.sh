#!/usr/bin/env bash
# Regenerates the go.mod and go.sum of every component module under hack/tools/ from versions.env.
# Run it after changing a version; it needs only the Go module proxy. The build (build.sh) never
# changes these files: it builds exactly what they pin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
export GOFLAGS=-mod=mod

new_module() { # dir module-path tool-packages...
  local dir=$1 path=$2; shift 2
  mkdir -p "$here/$dir"
  rm -f "$here/$dir/go.mod" "$here/$dir/go.sum"
  (cd "$here/$dir" && go mod init "$path" >/dev/null 2>&1)
  local pkg
  for pkg in "$@"; do (cd "$here/$dir" && go mod edit -tool="$pkg"); done
}

echo "pin: kubernetes $KUBERNETES_VERSION"
new_module kubernetes modelops.dev/hack/tools/kubernetes \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local paths that
# a dependent cannot see; replace each with the published v0.<minor>.<patch> instead.
staging_version="v0.${KUBERNETES_VERSION#v1.}"
kmod=$(cd "$here/kubernetes" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
for mod in $(awk '/=> \.\/staging\/src\//{print $1}' "$kmod"); do
  (cd "$here/kubernetes" && go mod edit -replace="$mod=$mod@$staging_version")
done
(cd "$here/kubernetes" && go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION" && go mod tidy)

echo "pin: containerd $CONTAINERD_VERSION"
new_module containerd modelops.dev/hack/tools/containerd \
  github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr
(cd "$here/containerd" && go mod edit -require="github.com/containerd/containerd/v2@$CONTAINERD_VERSION" && go mod tidy)

echo "pin: etcd $ETCD_VERSION"
new_module etcd modelops.dev/hack/tools/etcd go.etcd.io/etcd/server/v3
(cd "$here/etcd" && go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)

echo "pin: helm $HELM_VERSION"
new_module helm modelops.dev/hack/tools/helm helm.sh/helm/v3/cmd/helm
(cd "$here/helm" && go mod edit -require="helm.sh/helm/v3@$HELM_VERSION" && go mod tidy)

echo "pin: prometheus $PROMETHEUS_VERSION"
new_module prometheus modelops.dev/hack/tools/prometheus github.com/prometheus/prometheus/cmd/prometheus
(cd "$here/prometheus" && go mod edit -require="github.com/prometheus/prometheus@$PROMETHEUS_VERSION" && go mod tidy)
echo "pin: vegeta $VEGETA_VERSION"
new_module vegeta modelops.dev/hack/tools/vegeta github.com/tsenart/vegeta/v12
(cd "$here/vegeta" && go mod edit -require="github.com/tsenart/vegeta/v12@$VEGETA_VERSION" && go mod tidy)
echo "pin: seaweedfs $SEAWEEDFS_VERSION"
new_module seaweedfs modelops.dev/hack/tools/seaweedfs github.com/seaweedfs/seaweedfs/weed
# seaweedfs's own go.mod replaces go-bip39 (deleted from GitHub) with a fork; a replace in a
# dependency does not apply to its dependents, so it is repeated here.
(cd "$here/seaweedfs" && go mod edit -replace=github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0 \
  && go mod edit -require="github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" && go mod tidy)
echo "pin: traefik $TRAEFIK_VERSION"
new_module traefik modelops.dev/hack/tools/traefik github.com/traefik/traefik/v3/cmd/traefik
# Traefik's go.mod has replaces and excludes that a dependent does not inherit: each is repeated here.
# Its nested module dynamic/ext is a directory of its repository, in no module zip: traefik/stubs/
# has its two (empty) types.
tmod=$(cd "$here/traefik" && go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
edits=$(go mod edit -json "$tmod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
for r in mod.get("Replace") or []:
    new = r["New"]
    if r["Old"]["Path"] == "github.com/traefik/traefik/dynamic/ext":
        print("-replace=" + r["Old"]["Path"] + "=./stubs/dynamic-ext")
    elif new["Path"].startswith("."):
        sys.exit("pin: traefik replaces " + r["Old"]["Path"] + " with a local directory")
    else:
        print("-replace=" + r["Old"]["Path"] + "=" + new["Path"] + "@" + new["Version"])
for e in mod.get("Exclude") or []:
    print("-exclude=" + e["Path"] + "@" + e["Version"])
')
# Module versions of Traefik's graph that the Go module proxy answers 403 for ("not available"),
# and what stands in. Each is used only by one of the ACME DNS-challenge providers of lego (Traefik's
# certificate resolver for Huawei Cloud, UCloud, Sakura Cloud, Yandex Cloud, Akamai, Oracle Cloud),
# except go-http-auth (the basic and digest auth middlewares): the nearest version the proxy serves,
# or, for the modules it serves no version of, a stub module in traefik/stubs/ that declares what
# lego compiles against and fails every call (those two DNS challenges cannot work in this build).
edits="$edits
-replace=github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e
-replace=github.com/huaweicloud/huaweicloud-sdk-go-v3=github.com/huaweicloud/huaweicloud-sdk-go-v3@v0.1.215
-replace=github.com/ucloud/ucloud-sdk-go=github.com/ucloud/ucloud-sdk-go@v0.22.123
-replace=github.com/sacloud/sacloud-sdk-go=github.com/sacloud/sacloud-sdk-go@v0.2.0
-replace=github.com/yandex-cloud/go-sdk/services/dns=github.com/yandex-cloud/go-sdk/services/dns@v0.0.96
-replace=github.com/yandex-cloud/go-sdk/v2=github.com/yandex-cloud/go-sdk/v2@v2.175.0
-replace=github.com/akamai/AkamaiOPEN-edgegrid-golang/v13=./stubs/akamai-edgegrid
-replace=github.com/nrdcg/oci-go-sdk/common/v1065=./stubs/oci-common
-replace=github.com/nrdcg/oci-go-sdk/dns/v1065=./stubs/oci-dns"
# shellcheck disable=SC2086
(cd "$here/traefik" && go mod edit $edits \
  && go mod edit -require="github.com/traefik/traefik/v3@$TRAEFIK_VERSION" && go mod tidy)
echo "pin: done"
