#!/usr/bin/env bash
# Builds the real programs the tests run (sing-box, Prometheus, promtool,
# Alertmanager, amtool, blackbox_exporter, VictoriaMetrics, vmalert) and
# the linters `make lint` runs (golangci-lint, govulncheck) into a cache
# directory that git ignores, and skips whatever is already there. Each tool lives in its own
# module under tools/ so that its dependency graph never touches ours, and
# the binary's name carries the version so a bump never reuses a stale build.
#
#   tools/build.sh [sing-box|sing-box-v2ray|prometheus|promtool|alertmanager|amtool|blackbox_exporter|victoria-metrics|vmalert|golangci-lint|govulncheck|vulndb|all|lint]
#
# It prints the path of each binary it built or found.
#
# BOXFLEET_TOOLS_DIR overrides the cache (default: .cache/tools in the repo).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BOXFLEET_TOOLS_DIR:-$root/.cache/tools}
mkdir -p "$dir"

# Release tags of sing-box (release/DEFAULT_BUILD_TAGS) minus those whose
# modules the Go module proxy refuses here: with_wireguard, with_tailscale,
# with_cloudflared, with_naive_outbound (cronet) and with_openconnect.
SINGBOX_TAGS=with_gvisor,with_quic,with_dhcp,with_utls,with_acme,with_clash_api,with_ccm,with_ocm,with_usbip,with_openvpn,badlinkname,tfogo_checklinkname0

singbox_version() {
  (cd "$root/tools/singbox" && go list -m -f '{{.Version}}' github.com/sagernet/sing-box)
}

build_singbox() { # name extra-tags
  local v out
  v=$(singbox_version)
  out="$dir/$1-${v#v}"
  [ -x "$out" ] && { echo "$out"; return; }
  echo "building $1 ${v} into $dir" >&2
  (cd "$root/tools/singbox" && go build -trimpath -tags "$SINGBOX_TAGS$2" \
    -ldflags "-s -w -X github.com/sagernet/sing-box/constant.Version=${v#v} -X runtime.godebugDefault=multipathtcp=0,tlssha1=1 -checklinkname=0" \
    -o "$out.tmp" github.com/sagernet/sing-box/cmd/sing-box)
  mv "$out.tmp" "$out"
  echo "$out"
}

mod_version() { # tools-subdir module-path
  (cd "$root/tools/$1" && go list -m -f '{{.Version}}' "$2")
}

# Prometheus tags v3.MM.P are published to Go as v0.3MM.P (the module has no
# /v3 suffix); the binaries should report the release they really are.
prometheus_release() {
  local v=${1#v0.}
  echo "3.$((10#${v%%.*} - 300)).${v#*.}"
}

build_go_tool() { # name tools-subdir package version
  local out="$dir/$1-$4"
  [ -x "$out" ] && { echo "$out"; return; }
  echo "building $1 $4 into $dir" >&2
  (cd "$root/tools/$2" && go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$4" \
    -o "$out.tmp" "$3")
  mv "$out.tmp" "$out"
  echo "$out"
}

# Headless: without the builtinassets tag the server has no web UI, which
# the tests and the demo (Grafana is the UI) never need.
build_prometheus() { # prometheus|promtool
  local m=github.com/prometheus/prometheus
  build_go_tool "$1" prometheus "$m/cmd/$1" "$(prometheus_release "$(mod_version prometheus $m)")"
}

# The Alertmanager server comes from v0.31.x: from v0.32 on its module embeds
# a web UI that is not in the module zip, so it no longer builds from the
# proxy. amtool has no such problem and tracks the current release.
build_alertmanager() {
  local m=github.com/prometheus/alertmanager v
  v=$(mod_version alertmanager $m)
  build_go_tool alertmanager alertmanager $m/cmd/alertmanager "${v#v}"
}

build_amtool() {
  local m=github.com/prometheus/alertmanager v
  v=$(mod_version amtool $m)
  build_go_tool amtool amtool $m/cmd/amtool "${v#v}"
}

build_blackbox() {
  local m=github.com/prometheus/blackbox_exporter v
  v=$(mod_version blackbox $m)
  build_go_tool blackbox_exporter blackbox $m "${v#v}"
}

# VictoriaMetrics's single-node server and vmalert, the metrics tier beyond
# one Prometheus (deploy/vm-cluster): the tests run the controller's queries
# and the webhook's ALERTS check against them. The cluster's vminsert,
# vmselect and vmstorage come from a branch the module proxy does not
# serve; the single-node server answers the same query API. Both report
# their version through lib/buildinfo.
build_vm() { # victoria-metrics|vmalert
  local m=github.com/VictoriaMetrics/VictoriaMetrics v out
  v=$(mod_version victoriametrics $m)
  out="$dir/$1-${v#v}"
  [ -x "$out" ] && { echo "$out"; return; }
  echo "building $1 $v into $dir" >&2
  (cd "$root/tools/victoriametrics" && go build -trimpath \
    -ldflags "-s -w -X $m/lib/buildinfo.Version=$1-$v" -o "$out.tmp" $m/app/$1)
  mv "$out.tmp" "$out"
  echo "$out"
}

# The linters. golangci-lint stamps its version through main.version;
# govulncheck reads its own from the build info.
build_golangci_lint() {
  local m=github.com/golangci/golangci-lint/v2 v out
  v=$(mod_version golangci-lint $m)
  out="$dir/golangci-lint-${v#v}"
  [ -x "$out" ] && { echo "$out"; return; }
  echo "building golangci-lint $v into $dir" >&2
  (cd "$root/tools/golangci-lint" && go build -trimpath \
    -ldflags "-s -w -X main.version=${v#v}" -o "$out.tmp" $m/cmd/golangci-lint)
  mv "$out.tmp" "$out"
  echo "$out"
}

build_govulncheck() {
  local m=golang.org/x/vuln v
  v=$(mod_version govulncheck $m)
  build_go_tool govulncheck govulncheck $m/cmd/govulncheck "${v#v}"
}

# The Go vulnerability database as of the golang.org/x/vulndb version that
# tools/vulndb pins, for govulncheck -db file://… where vuln.go.dev cannot be
# reached: the module carries every OSV entry (data/osv), and its indexdb
# command writes the v1 database layout govulncheck reads.
build_vulndb() {
  local m=golang.org/x/vulndb v src out
  v=$(mod_version vulndb $m)
  out="$dir/vulndb-$v"
  [ -f "$out/index/db.json" ] && { echo "$out"; return; }
  echo "indexing the Go vulnerability database $v into $dir" >&2
  src=$(cd "$root/tools/vulndb" && go mod download $m && go list -m -f '{{.Dir}}' $m)
  rm -rf "$out.tmp"
  (cd "$root/tools/vulndb" && go run $m/cmd/indexdb -vulns "$src/data/osv" -out "$out.tmp")
  rm -rf "$out"
  mv "$out.tmp" "$out"
  echo "$out"
}

# One build at a time: go test runs packages in parallel and each may ask.
exec 9>"$dir/.lock"
flock 9

case "${1:-all}" in
  sing-box) build_singbox sing-box "" ;;
  sing-box-v2ray) build_singbox sing-box-v2ray ",with_v2ray_api" ;;
  prometheus | promtool) build_prometheus "$1" ;;
  alertmanager) build_alertmanager ;;
  amtool) build_amtool ;;
  blackbox_exporter) build_blackbox ;;
  victoria-metrics | vmalert) build_vm "$1" ;;
  golangci-lint) build_golangci_lint ;;
  govulncheck) build_govulncheck ;;
  vulndb) build_vulndb ;;
  lint)
    build_golangci_lint
    build_govulncheck
    ;;
  all)
    build_singbox sing-box ""
    build_singbox sing-box-v2ray ",with_v2ray_api"
    build_prometheus prometheus
    build_prometheus promtool
    build_alertmanager
    build_amtool
    build_blackbox
    build_vm victoria-metrics
    build_vm vmalert
    build_golangci_lint
    build_govulncheck
    ;;
  *) echo "unknown tool: $1" >&2; exit 2 ;;
esac
