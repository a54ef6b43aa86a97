#!/usr/bin/env bash
# The whole boxfleet loop on loopback, without Docker: a controller on
# SQLite, two sing-box nodes with their exporters (which register with the
# controller and apply its user set), Prometheus and Alertmanager with the
# shipped configs and rules, and the blackbox exporter. It creates a demo
# user and prints where everything is. Ctrl-C stops every process.
#
# The first run builds sing-box, Prometheus, Alertmanager and the blackbox
# exporter from source (several minutes); later runs reuse the cache.
#
# Environment: BOXFLEET_DEMO_DIR (state, default data/demo), BOXFLEET_DEMO_PORT
# (controller port, default 8080; every other port is derived from it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BOXFLEET_DEMO_DIR:-$root/data/demo}
base=${BOXFLEET_DEMO_PORT:-8080}
cp_port=$base                 # controller
prom_port=$((base + 1010))    # 9090 by default
am_port=$((base + 1013))      # 9093
bb_port=$((base + 1035))      # 9115

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pids=()
cleanup() {
  trap - EXIT INT TERM
  say "stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name command... (logs to $dir/logs/name.log)
  local name=$1; shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$dir/run/$name.pid"
}

# up reports whether url answers 2xx: with curl when the machine has it,
# else by a bare request over bash's /dev/tcp.
up() {
  if command -v curl >/dev/null; then curl -fsS -o /dev/null "$1" 2>/dev/null; return; fi
  local hp=${1#http://}; hp=${hp%%/*}; local path=/${1#http://*/}
  exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}" 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hp" >&3
  local status; read -r _ status _ <&3 || true; exec 3<&-
  [ "${status:0:1}" = 2 ]
}

wait_http() { # name url
  for _ in $(seq 1 300); do
    if up "$2"; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not come up at $2; see $dir/logs/$1.log" >&2
  tail -20 "$dir/logs/$1.log" >&2 || true
  exit 1
}

say "building boxfleet and singbox_exporter"
mkdir -p "$root/bin"
(cd "$root" && go build -o bin/boxfleet ./cmd/boxfleet && go build -o bin/singbox_exporter ./cmd/singbox_exporter)
say "building sing-box, Prometheus, Alertmanager and blackbox_exporter (first run: several minutes)"
tool() { bash "$root/tools/build.sh" "$1"; }
sb=$(tool sing-box); prom=$(tool prometheus); am=$(tool alertmanager); bb=$(tool blackbox_exporter)

rm -rf "$dir/run"
mkdir -p "$dir/logs" "$dir/run" "$dir/run/secrets" "$dir/controller"
bf() { "$root/bin/boxfleet" --url "http://127.0.0.1:$cp_port" --token-file "$dir/controller/admin.token" "$@"; }

say "starting the controller on 127.0.0.1:$cp_port"
start controller "$root/bin/boxfleet" serve --data.dir "$dir/controller" \
  --web.listen-address "127.0.0.1:$cp_port" --prometheus.url "http://127.0.0.1:$prom_port" \
  --accounting.interval 15s --health.interval 15s --install.dir "$root/dist"
wait_http controller "http://127.0.0.1:$cp_port/-/healthy"

for i in 1 2; do
  node="demo-$i"
  ndir="$dir/run/$node"
  mkdir -p "$ndir"
  if ! bf node get "$node" >/dev/null 2>&1; then
    token=$(bf -o json node add "$node" --label group=demo --label region="local-$i" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
    printf '%s\n' "$token" >"$dir/controller/$node.token"
    chmod 600 "$dir/controller/$node.token"
  fi
  cp "$dir/controller/$node.token" "$ndir/token"
  secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s' "$secret" >"$ndir/clash.secret"
  psk=$(head -c 16 /dev/urandom | base64)
  port=$((base + 12000 + i * 10)) # 20090, 20100 by default
  # demo-1 measures users exactly through sing-box's API service (its
  # exporter finds the service in the config it manages); demo-2 through
  # the Clash API alone, as a node on an older sing-box would.
  services='[]'
  if [ "$i" = 1 ]; then
    services="[{\"type\": \"api\", \"tag\": \"boxfleet-api\", \"listen\": \"127.0.0.1\", \"listen_port\": $((port + 7)), \"secret\": \"$secret\"}]"
  fi
  cat >"$ndir/sing-box.json" <<JSON
{
  "log": {"level": "info"},
  "inbounds": [
    {"type": "shadowsocks", "tag": "ss2022", "listen": "127.0.0.1", "listen_port": $port,
     "method": "2022-blake3-aes-128-gcm", "password": "$psk", "users": []},
    {"type": "vless", "tag": "vless", "listen": "127.0.0.1", "listen_port": $((port + 1)), "users": []},
    {"type": "vmess", "tag": "vmess-ws", "listen": "127.0.0.1", "listen_port": $((port + 2)), "users": [],
     "transport": {"type": "ws", "path": "/ws"}}
  ],
  "outbounds": [{"type": "direct", "tag": "direct"}],
  "services": $services,
  "experimental": {"clash_api": {"external_controller": "127.0.0.1:$((port + 5))", "secret": "$secret"}}
}
JSON
  say "starting $node: sing-box on 127.0.0.1:$port-$((port + 2)), exporter on 127.0.0.1:$((port + 6))"
  start "$node-sing-box" "$sb" run -c "$ndir/sing-box.json"
  echo "${pids[-1]}" >"$ndir/sing-box.pid"
  start "$node-exporter" "$root/bin/singbox_exporter" \
    --web.listen-address "127.0.0.1:$((port + 6))" --state.path "$ndir/exporter.state.json" \
    --singbox.clash-api "http://127.0.0.1:$((port + 5))" --singbox.clash-secret-file "$ndir/clash.secret" \
    --controller.url "http://127.0.0.1:$cp_port" --controller.token-file "$ndir/token" \
    --node.name "$node" --node.address 127.0.0.1 --node.label group=demo --node.label "region=local-$i" \
    --singbox.config "$ndir/sing-box.json" --singbox.binary "$sb" --singbox.pid-file "$ndir/sing-box.pid" \
    --singbox.reload-min-interval 5s
  wait_http "$node-exporter" "http://127.0.0.1:$((port + 6))/-/healthy"
done

say "starting Prometheus on 127.0.0.1:$prom_port, Alertmanager on 127.0.0.1:$am_port, blackbox on 127.0.0.1:$bb_port"
cp "$dir/controller/admin.token" "$dir/run/secrets/boxfleet_admin_token"
echo "demo-bot-token" >"$dir/run/secrets/telegram_bot_token" # Telegram is not reachable from a demo
echo "0" >"$dir/run/secrets/telegram_chat_id"
rewrite() {
  sed -e "s#boxfleet:8080#127.0.0.1:$cp_port#g" -e "s#alertmanager:9093#127.0.0.1:$am_port#g" \
      -e "s#blackbox:9115#127.0.0.1:$bb_port#g" -e "s#localhost:9090#127.0.0.1:$prom_port#g" \
      -e "s#/run/secrets/#$dir/run/secrets/#g" -e "s#/etc/prometheus/alerts/#$root/alerts/#g" \
      -e "s#/etc/alertmanager/templates/#$root/prometheus/templates/#g" "$1"
}
rewrite "$root/prometheus/prometheus.yml" >"$dir/run/prometheus.yml"
{ printf 'global:\n  telegram_api_url: http://127.0.0.1:9\n'; rewrite "$root/prometheus/alertmanager.yml"; } >"$dir/run/alertmanager.yml"
start prometheus "$prom" --config.file "$dir/run/prometheus.yml" --storage.tsdb.path "$dir/prometheus" \
  --web.listen-address "127.0.0.1:$prom_port"
start alertmanager "$am" --config.file "$dir/run/alertmanager.yml" --storage.path "$dir/alertmanager" \
  --web.listen-address "127.0.0.1:$am_port" --cluster.listen-address=
start blackbox "$bb" --config.file "$root/prometheus/blackbox.yml" --web.listen-address "127.0.0.1:$bb_port"
wait_http prometheus "http://127.0.0.1:$prom_port/-/ready"
wait_http alertmanager "http://127.0.0.1:$am_port/-/ready"
wait_http blackbox "http://127.0.0.1:$bb_port/-/healthy"

bf user get demo >/dev/null 2>&1 || bf user add demo --limit 10GiB --expire 30d --reset month >/dev/null
sub=$(bf user get demo | sed -n 's/^subscription *//p')

cat <<EOF

boxfleet demo is running (state and logs in $dir).

  subscription (demo user)  $sub
     as sing-box JSON       $sub?format=singbox
     in a browser           open the URL above
  controller API            http://127.0.0.1:$cp_port/api/v1/   (token: $dir/controller/admin.token)
  admin CLI                 BOXFLEET_URL=http://127.0.0.1:$cp_port BOXFLEET_TOKEN_FILE=$dir/controller/admin.token bin/boxfleet user list
  Prometheus                http://127.0.0.1:$prom_port
  Alertmanager              http://127.0.0.1:$am_port
  blackbox exporter         http://127.0.0.1:$bb_port
  node exporters            http://127.0.0.1:$((base + 12016))/metrics  http://127.0.0.1:$((base + 12026))/metrics

demo ready; press Ctrl-C to stop everything.
EOF
while :; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "a demo process ($p) exited; see $dir/logs" >&2
      exit 1
    fi
  done
  sleep 2
done
