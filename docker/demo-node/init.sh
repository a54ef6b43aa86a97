#!/bin/sh
# Prepares the demo node's volume once: the sing-box config from the shipped
# template with keys generated here (no key is ever committed), owned by the
# unprivileged user that sing-box and the exporter run as.
#
#   NODE_DIR  volume to prepare (default /node)
#   TEMPLATE  config template (default /demo/sing-box.json)
#   NODE_USER owner uid:gid (default 65532:65532, distroless "nonroot")
set -eu
dir=${NODE_DIR:-/node}
template=${TEMPLATE:-/demo/sing-box.json}
cfg=$dir/config.json

if [ ! -f "$cfg" ]; then
  psk=$(sing-box generate rand --base64 16)
  private=$(sing-box generate reality-keypair | sed -n 's/^PrivateKey: *//p')
  short_id=$(sing-box generate rand --hex 8)
  [ -n "$private" ] || { echo "init: no REALITY key from sing-box" >&2; exit 1; }
  sed -e "s|@SS_PSK@|$psk|" -e "s|@REALITY_PRIVATE_KEY@|$private|" -e "s|@REALITY_SHORT_ID@|$short_id|" \
    "$template" > "$cfg.tmp"
  sing-box check -c "$cfg.tmp"
  mv "$cfg.tmp" "$cfg"
  echo "init: wrote $cfg"
fi
chown -R "${NODE_USER:-65532:65532}" "$dir"
