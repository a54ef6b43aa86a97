#!/usr/bin/env bash
# A local node on loopback: a stock sing-box (built by tools/build.sh) with
# two users, and singbox_exporter beside it. Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sb=$(bash "$root/tools/build.sh" sing-box)
dir=${BOXFLEET_RUN_DIR:-$root/data/local-node}
mkdir -p "$dir"
secret_file="$dir/clash.secret"
[ -s "$secret_file" ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"
chmod 600 "$secret_file"
cat >"$dir/sing-box.json" <<JSON
{
  "log": {"level": "info"},
  "inbounds": [
    {"type": "vless", "tag": "vless-in", "listen": "127.0.0.1", "listen_port": 20443,
     "users": [{"name": "alice", "uuid": "2f1a7e4c-5b7d-4e0f-9a51-3c6f1d2e8b90"}]},
    {"type": "shadowsocks", "tag": "ss-in", "listen": "127.0.0.1", "listen_port": 20444,
     "method": "2022-blake3-aes-128-gcm", "password": "MTIzNDU2Nzg5MDEyMzQ1Ng==",
     "users": [{"name": "bob", "password": "YWJjZGVmZ2hpamtsbW5vcA=="}]}
  ],
  "outbounds": [{"type": "direct", "tag": "direct"}],
  "experimental": {"clash_api": {"external_controller": "127.0.0.1:9090", "secret": "$(cat "$secret_file")"}}
}
JSON
"$sb" check -c "$dir/sing-box.json"
"$sb" run -c "$dir/sing-box.json" >"$dir/sing-box.log" 2>&1 &
sb_pid=$!
trap 'kill $sb_pid 2>/dev/null; wait' EXIT INT TERM
echo "sing-box: vless on 127.0.0.1:20443 (alice), shadowsocks 2022 on 127.0.0.1:20444 (bob); log in $dir/sing-box.log"
echo "metrics:  http://127.0.0.1:9550/metrics"
"$root/bin/singbox_exporter" --web.listen-address=127.0.0.1:9550 \
  --singbox.clash-secret-file="$secret_file" --state.path="$dir/exporter.state.json"
