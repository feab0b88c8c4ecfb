#!/usr/bin/env bash
# Copies the CRDs from crds/ (the one source) into the Helm chart's crds/ folder.
# tests/unit/test_chart_files.py fails when the copies differ: run this after editing crds/.
#   hack/sync-chart-crds.sh          # write the copies
#   hack/sync-chart-crds.sh --check  # exit 1 when they differ (CI)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/crds"
dst="$repo/charts/modelops/crds"

if [[ "${1:-}" == "--check" ]]; then
  diff -r "$src" "$dst" >/dev/null || { echo "charts/modelops/crds differs from crds/: run hack/sync-chart-crds.sh" >&2; exit 1; }
  exit 0
fi
mkdir -p "$dst"
# Copies removed from crds/ leave the chart too.
find "$dst" -maxdepth 1 -name '*.yaml' -type f -delete
cp "$src"/*.yaml "$dst"/
echo "synced $(ls "$src"/*.yaml | wc -l) CRDs into charts/modelops/crds"
