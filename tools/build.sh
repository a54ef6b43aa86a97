#!/usr/bin/env bash
# Builds the real programs the tests run (sing-box today; Prometheus and
# Alertmanager join as their modules are added) into a cache directory that
# git ignores, and skips whatever is already there. Each tool lives in its own
# module under tools/ so that its dependency graph never touches ours.
#
#   tools/build.sh [sing-box|sing-box-v2ray|all]
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

# One build at a time: go test runs packages in parallel and each may ask.
exec 9>"$dir/.lock"
flock 9

case "${1:-all}" in
  sing-box) build_singbox sing-box "" ;;
  sing-box-v2ray) build_singbox sing-box-v2ray ",with_v2ray_api" ;;
  all)
    build_singbox sing-box ""
    build_singbox sing-box-v2ray ",with_v2ray_api"
    ;;
  *) echo "unknown tool: $1" >&2; exit 2 ;;
esac
