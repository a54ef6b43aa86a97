#!/bin/sh
# Installs singbox_exporter on a sing-box node as a hardened systemd service.
# It installs the binary it is given; without --binary it fetches the one
# for this machine's architecture from the controller, with the unit and
# flags file beside it, which makes the one line a new node's answer shows
# work on a fresh machine with only curl (or wget) and systemd:
#
#   curl -fsSL https://ctl.example/install/node.sh | sudo sh -s -- \
#     --controller https://ctl.example --name fra-1 --token TOKEN
#
# It also gives
# sing-box's unit a drop-in, sing-box.service.d/10-boxfleet-flush.conf, whose
# ExecStop asks the exporter to flush (POST /-/flush: poll, count, write the
# state) before systemd stops sing-box, so `systemctl stop` or `restart
# sing-box` and package upgrades lose no traffic. The flush uses curl, else
# wget, else bash; it gives up after 15 s and never prevents the stop.
# With --singbox-api (sing-box 1.14 or later, stock builds) it sets the
# exporter to read exact per-user traffic from sing-box's API service and
# writes that service's secret; with --singbox-v2ray-binary it installs a
# sing-box built with the V2Ray stats API for the same on older versions.
# Either way it never edits sing-box's config, but prints the block to add.
#
#   install-node.sh --binary ./singbox_exporter \
#     --controller-url https://boxfleet.example.com --token-file ./node.token \
#     --node-name fra-1 --node-address fra-1.example.com --label region=eu
#
# Options:
#   --binary PATH          singbox_exporter to install; default: fetched from
#                          the controller (/install/singbox_exporter-linux-ARCH)
#   --controller-url URL   run the node agent against this controller; without
#                          it the exporter only serves metrics (--controller)
#   --token-file PATH      the node token `boxfleet node add` printed
#   --token TOKEN          the token itself, instead of --token-file
#   --node-name NAME       default: this host's name (--name)
#   --node-address HOST    public host clients dial; default: --node-name
#   --label KEY=VALUE      node label (region, group, ...); repeatable
#   --singbox-config PATH  sing-box config the agent manages (/etc/sing-box/config.json)
#   --singbox-binary PATH  sing-box, for `sing-box check` (default: from PATH;
#                          with --singbox-v2ray-binary, /usr/local/bin/sing-box)
#   --singbox-v2ray-binary PATH
#                          exact mode: install this sing-box, built with the
#                          V2Ray stats API (`tools/build.sh sing-box-v2ray`),
#                          as /usr/local/bin/sing-box (the previous one is kept
#                          as sing-box.prev), and add --singbox.v2ray-api to
#                          the flags file
#   --v2ray-api-listen HOST:PORT
#                          the stats API's address (127.0.0.1:10085)
#   --singbox-api HOST:PORT
#                          exact mode on a stock sing-box 1.14+: the address
#                          of its API service ("services": [{"type": "api"}]);
#                          adds --singbox.api and its secret file
#   --device-key-file PATH the fleet's device key (the same file on every
#                          node, at least 16 bytes: head -c 32 /dev/urandom |
#                          base64): installed as /etc/singbox_exporter/device-key,
#                          readable by the exporter only, and adds
#                          --collector.device-key-file, so that Prometheus
#                          counts a user's devices across nodes
#   --prefix DIR           install under DIR instead of / (packaging, tests):
#                          no user is created, systemd is not touched
#   --no-start             install and enable, but do not start
#   --dry-run              print what would be done, change nothing
#
# Re-running upgrades the binary and the unit and keeps an existing flags
# file and token, so an operator's edits survive (--singbox-v2ray-binary
# adds its one flag to a kept flags file that lacks it).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary= controller_url= token_file= token= node_name= node_address= labels=
singbox_config=/etc/sing-box/config.json singbox_binary=
singbox_v2ray_binary= v2ray_listen=127.0.0.1:10085 v2ray_listen_given=no singbox_api=
device_key_file=
prefix= start=yes dry_run=no

die() { echo "install-node: $*" >&2; exit 1; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --binary) need "$@"; binary=$2; shift ;;
    --controller-url|--controller) need "$@"; controller_url=${2%/}; shift ;;
    --token-file) need "$@"; token_file=$2; shift ;;
    --token) need "$@"; token=$2; shift ;;
    --node-name|--name) need "$@"; node_name=$2; shift ;;
    --node-address) need "$@"; node_address=$2; shift ;;
    --label) need "$@"; case $2 in *=*) ;; *) die "--label wants KEY=VALUE, got $2" ;; esac
      labels="$labels
$2"; shift ;;
    --singbox-config) need "$@"; singbox_config=$2; shift ;;
    --singbox-binary) need "$@"; singbox_binary=$2; shift ;;
    --singbox-v2ray-binary) need "$@"; singbox_v2ray_binary=$2; shift ;;
    --v2ray-api-listen) need "$@"; v2ray_listen=$2; v2ray_listen_given=yes; shift ;;
    --singbox-api) need "$@"; singbox_api=$2; shift ;;
    --device-key-file) need "$@"; device_key_file=$2; shift ;;
    --prefix) need "$@"; prefix=${2%/}; shift ;;
    --no-start) start=no ;;
    --dry-run) dry_run=yes ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# fetch URL FILE: the one-line install downloads from the controller.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1" || die "cannot fetch $1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" || die "cannot fetch $1"
  else
    die "neither curl nor wget to fetch $1"
  fi
}
if [ -n "$token" ] || [ -z "$binary" ] || [ ! -f "$here/singbox_exporter.flags" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
if [ -n "$token" ]; then
  [ -z "$token_file" ] || die "give --token or --token-file, not both"
  token_file=$work/node.token
  (umask 077; printf '%s\n' "$token" > "$token_file")
fi
if [ -z "$binary" ] && [ -n "$controller_url" ]; then
  case $(uname -m) in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) die "no exporter build for $(uname -m); build one and pass --binary" ;;
  esac
  binary=$work/singbox_exporter
  fetch "$controller_url/install/singbox_exporter-linux-$arch" "$binary"
  chmod 0755 "$binary"
fi
# Run from a pipe (sh -s), the unit and flags file are not beside the
# script: the controller serves them too.
if [ ! -f "$here/singbox_exporter.flags" ] || [ ! -f "$here/singbox_exporter.service" ]; then
  [ -n "$controller_url" ] || die "singbox_exporter.flags and .service are not beside the script; run it from deploy/ or give --controller"
  here=$work
  fetch "$controller_url/install/singbox_exporter.flags" "$here/singbox_exporter.flags"
  fetch "$controller_url/install/singbox_exporter.service" "$here/singbox_exporter.service"
fi
[ -n "$binary" ] || die "--binary is required (or --controller, to fetch it)"
[ -f "$binary" ] || die "no such binary: $binary"
if [ -n "$controller_url" ]; then
  [ -n "$token_file" ] || die "--controller-url needs --token-file"
  [ -f "$token_file" ] || die "no such token file: $token_file"
fi
[ -n "$node_name" ] || node_name=$(hostname)
# check_hostport: an address goes verbatim into the flags file, a sed
# replacement and the JSON printed below: host names, IPv4 and [IPv6]
# addresses only.
check_hostport() { # option value
  case $2 in
    *[!]A-Za-z0-9.:%[-]* | :* | *:) die "$1 wants HOST:PORT, got $2" ;;
    *:*) ;;
    *) die "$1 wants HOST:PORT, got $2" ;;
  esac
  case ${2##*:} in
    *[!0-9]*) die "$1 wants HOST:PORT, got $2" ;;
  esac
}
if [ -n "$singbox_api" ]; then
  check_hostport --singbox-api "$singbox_api"
  [ -z "$singbox_v2ray_binary" ] || die "--singbox-api and --singbox-v2ray-binary both make users exact: choose one"
fi
[ -n "$node_address" ] || node_address=$node_name
# The device key: what the exporter accepts (16 bytes or more once the
# surrounding white space is gone), checked without ever printing it.
device_key=
if [ -n "$device_key_file" ]; then
  [ -f "$device_key_file" ] || die "no such device key file: $device_key_file"
  [ -r "$device_key_file" ] || die "cannot read the device key file $device_key_file"
  [ "$(tr -d ' \t\r\n' < "$device_key_file" | wc -c)" -ge 16 ] ||
    die "the device key file $device_key_file holds fewer than 16 bytes; generate one for the whole fleet with: head -c 32 /dev/urandom | base64"
  device_key=/etc/singbox_exporter/device-key
fi
# Exact mode: the given sing-box must have the V2Ray stats API, which its
# `version` lists under Tags (with_v2ray_api); release builds lack it.
v2ray_api=
if [ -n "$singbox_v2ray_binary" ]; then
  [ -f "$singbox_v2ray_binary" ] || die "no such binary: $singbox_v2ray_binary"
  version=$("$singbox_v2ray_binary" version 2>&1) ||
    die "$singbox_v2ray_binary does not run: \`$singbox_v2ray_binary version\` failed: $version"
  tags=$(printf '%s\n' "$version" | sed -n 's/^Tags: *//p' | head -n 1)
  case ",$tags," in
    *,with_v2ray_api,*) ;;
    *) die "$singbox_v2ray_binary has no V2Ray stats API: the Tags of its \`version\` (${tags:-none}) lack with_v2ray_api; build one with \`bash tools/build.sh sing-box-v2ray\`" ;;
  esac
  check_hostport --v2ray-api-listen "$v2ray_listen"
  v2ray_api=$v2ray_listen
elif [ "$v2ray_listen_given" = yes ]; then
  die "--v2ray-api-listen goes with --singbox-v2ray-binary"
fi
if [ -z "$singbox_binary" ]; then
  if [ -n "$v2ray_api" ]; then
    singbox_binary=/usr/local/bin/sing-box # the agent's check must know v2ray_api
  else
    singbox_binary=$(command -v sing-box || echo /usr/bin/sing-box)
  fi
fi
if [ -z "$prefix" ] && [ "$dry_run" = no ] && [ "$(id -u)" != 0 ]; then
  die "run as root, or use --prefix DIR / --dry-run"
fi

user=singbox_exporter
bin_dir=$prefix/usr/local/bin
conf_dir=$prefix/etc/singbox_exporter
unit_dir=$prefix/etc/systemd/system
singbox_dir=$(dirname "$singbox_config")

run() {
  echo "+ $*"
  [ "$dry_run" = yes ] || "$@"
}

# flags writes the flags file: the shipped example with this node's values.
# Without a controller the agent's lines are commented out.
flags() {
  awk -v url="$controller_url" -v name="$node_name" -v addr="$node_address" \
      -v cfg="$singbox_config" -v sb="$singbox_binary" -v labels="$labels" -v v2ray="$v2ray_api" \
      -v api="$singbox_api" -v key="$device_key" '
    function set(flag, value) { print flag "=" value }
    /^(# ?)?--collector\.device-key-file=/ && key != "" { next }
    /^(# ?)?--singbox\.api(-secret-file)?=/ && api != "" { next }
    /^--singbox\.clash-api=/ && api != "" { print; set("--singbox.api", api); set("--singbox.api-secret-file", "/etc/singbox_exporter/api-secret"); next }
    /^(# ?)?--singbox\.v2ray-api=/ && v2ray != "" { next }
    /^--singbox\.clash-api=/ && v2ray != "" { print; set("--singbox.v2ray-api", v2ray); next }
    /^--controller\.|^--node\.|^--singbox\.(config|binary|reload-command)=/ && url == "" { print "# " $0; next }
    /^--controller\.url=/ { set("--controller.url", url); next }
    /^--node\.name=/ { set("--node.name", name); next }
    /^--node\.address=/ { set("--node.address", addr); next }
    /^--node\.label=/ {
      if (!done) { n = split(labels, l, "\n"); for (i = 1; i <= n; i++) if (l[i] != "") set("--node.label", l[i]) }
      done = 1; next
    }
    /^--singbox\.config=/ { set("--singbox.config", cfg); next }
    /^--singbox\.binary=/ { set("--singbox.binary", sb); next }
    { print }
    END { if (key != "") { print ""; print "# The fleet'"'"'s device key: devices counted across nodes."; set("--collector.device-key-file", key) } }
  ' "$here/singbox_exporter.flags"
}

# flush_url prints the exporter's flush URL, from the flags file this run
# keeps or would write: its first --web.listen-address, on loopback when
# it listens on every address.
flush_url() {
  addr=$( (cat "$conf_dir/flags" 2>/dev/null || flags) |
    sed -n 's/^--web\.listen-address=//p' | head -n 1)
  [ -n "$addr" ] || addr=:9550
  host=${addr%:*} port=${addr##*:}
  case $host in ''|0.0.0.0|'[::]') host=127.0.0.1 ;; esac
  echo "http://$host:$port/-/flush"
}

# flush_command prints a command line that POSTs to the URL and gives up
# after 15 s, with the first of curl, wget and bash found here.
flush_command() {
  if tool=$(command -v curl); then
    echo "$tool -fsS -m 15 -X POST $1"
  elif tool=$(command -v wget); then
    echo "$tool -q -O /dev/null -T 15 -t 1 --post-data= $1"
  elif tool=$(command -v bash) && timeout=$(command -v timeout); then
    # bash and coreutils are essential on Debian and Ubuntu. HTTP/1.0: the
    # exporter answers once the flush is done, then closes.
    hostport=${1#http://}
    hostport=${hostport%%/*}
    host=${hostport%:*}
    host=${host#\[}
    host=${host%\]}
    printf '%s\n' "$timeout 15 $tool -c 'exec 3<>/dev/tcp/$host/${hostport##*:} && printf \"POST /-/flush HTTP/1.0\\r\\n\\r\\n\" >&3 && head -n 1 <&3'"
  else
    return 1
  fi
}

# keep_v2ray_flag gives a kept flags file the exporter's exact-mode flag,
# and leaves everything else in it as the operator has it: a file without
# the flag gets it appended; one with another address keeps it unless
# --v2ray-api-listen asked for a new one.
keep_v2ray_flag() {
  f=$conf_dir/flags
  current=$(sed -n 's/^--singbox\.v2ray-api=//p' "$f" | tail -n 1)
  if [ "$current" = "$v2ray_api" ]; then
    echo "# $f already has --singbox.v2ray-api=$v2ray_api"
  elif [ -z "$current" ]; then
    echo "+ add --singbox.v2ray-api=$v2ray_api to $f"
    if [ "$dry_run" = no ]; then
      cp -p "$f" "$f.tmp" # the kept file's mode and owner
      { cat "$f"; [ -z "$(tail -c 1 "$f")" ] || echo; echo "--singbox.v2ray-api=$v2ray_api"; } > "$f.tmp"
      mv "$f.tmp" "$f"
    fi
  elif [ "$v2ray_listen_given" = yes ]; then
    echo "+ set --singbox.v2ray-api=$v2ray_api in $f (was $current)"
    if [ "$dry_run" = no ]; then
      cp -p "$f" "$f.tmp"
      sed "s|^--singbox\.v2ray-api=.*|--singbox.v2ray-api=$v2ray_api|" "$f" > "$f.tmp"
      mv "$f.tmp" "$f"
    fi
  else
    echo "# keeping --singbox.v2ray-api=$current in $f (--v2ray-api-listen changes it)"
    v2ray_api=$current
  fi
  sb_flag=$(sed -n 's/^--singbox\.binary=//p' "$f" | tail -n 1)
  if grep -q '^--controller\.url=' "$f" && [ "$sb_flag" != /usr/local/bin/sing-box ]; then
    echo "# $f has --singbox.binary=${sb_flag:-sing-box}: the agent runs \`sing-box check\` with it, and once the config has v2ray_api only a build with the API passes; set --singbox.binary=/usr/local/bin/sing-box" >&2
  fi
}

# keep_api_flags gives a kept flags file the API-service flags when it has
# none, and leaves a file that has them as the operator has it.
keep_api_flags() {
  f=$conf_dir/flags
  if grep -q '^--singbox\.api=' "$f"; then
    echo "# keeping $f's --singbox.api"
    return
  fi
  echo "+ add --singbox.api=$singbox_api to $f"
  if [ "$dry_run" = no ]; then
    cp -p "$f" "$f.tmp" # the kept file's mode and owner
    { cat "$f"; [ -z "$(tail -c 1 "$f")" ] || echo
      echo "--singbox.api=$singbox_api"; echo "--singbox.api-secret-file=/etc/singbox_exporter/api-secret"; } > "$f.tmp"
    mv "$f.tmp" "$f"
  fi
}

# keep_device_key_flag gives a kept flags file the device key flag when it
# has none, and leaves a file that has one as the operator has it.
keep_device_key_flag() {
  f=$conf_dir/flags
  current=$(sed -n 's/^--collector\.device-key-file=//p' "$f" | tail -n 1)
  if [ "$current" = "$device_key" ]; then
    echo "# $f already has --collector.device-key-file=$device_key"
    return
  elif [ -n "$current" ]; then
    echo "# keeping $f's --collector.device-key-file=$current: the key was installed as $device_key, which that file does not read" >&2
    return
  fi
  echo "+ add --collector.device-key-file=$device_key to $f"
  if [ "$dry_run" = no ]; then
    cp -p "$f" "$f.tmp" # the kept file's mode and owner
    { cat "$f"; [ -z "$(tail -c 1 "$f")" ] || echo; echo "--collector.device-key-file=$device_key"; } > "$f.tmp"
    mv "$f.tmp" "$f"
  fi
}

# api_notes tells the operator the rest of API mode: the service block for
# sing-box's config, with the secret the exporter will send.
api_notes() {
  [ -n "$singbox_api" ] || return 0
  host=${singbox_api%:*} port=${singbox_api##*:}
  host=${host#\[}
  host=${host%\]}
  cat <<EOF

# Exact mode: the exporter reads per-user traffic from sing-box's API
# service at $singbox_api (sing-box 1.14 or later). Add this to sing-box's
# config, $singbox_config (into its "services" if it has one), with the
# secret from /etc/singbox_exporter/api-secret in place of SECRET:

"services": [{"type": "api", "tag": "boxfleet-api", "listen": "$host", "listen_port": $port, "secret": "SECRET"}]

# Then: sing-box check -c $singbox_config && systemctl restart sing-box
EOF
}

# v2ray_notes tells the operator the rest of exact mode, which is theirs to
# do: this script never edits sing-box's config.
v2ray_notes() {
  [ -n "$v2ray_api" ] || return 0
  cat <<EOF

# Exact mode: the exporter reads per-user traffic from sing-box's V2Ray
# stats API at $v2ray_api. Add this to sing-box's config,
# $singbox_config (merged into its "experimental" if it has one):

"experimental": {"v2ray_api": {"listen": "$v2ray_api", "stats": {"enabled": true, "users": []}}}

EOF
  if [ -n "$controller_url" ] || grep -q '^--controller\.url=' "$conf_dir/flags" 2>/dev/null; then
    echo "# The agent fills \"users\" from then on: sing-box counts only the users"
    echo "# listed there, and the agent lists every user it writes into the config"
    echo "# (it sees the edited file when the exporter restarts)."
  else
    echo "# sing-box counts only the users listed in \"users\": without the agent"
    echo "# (--controller-url), list every user's name there yourself."
  fi
  cat <<EOF
# sing-box.service must start /usr/local/bin/sing-box: \`systemctl cat
# sing-box.service\` shows its ExecStart. Then:
#   /usr/local/bin/sing-box check -c $singbox_config
#   systemctl restart sing-box
#   systemctl restart singbox_exporter
# The sing-box this replaces, if any, is kept as /usr/local/bin/sing-box.prev.
EOF
}

dropin_text() {
  cat <<EOF
# Written by boxfleet's install-node.sh. Before sing-box stops, ask
# singbox_exporter to poll it one last time and save its counters, so that
# the stop loses no traffic. "-": a failed flush never prevents the stop.
[Service]
ExecStop=-$1
EOF
}

# 1. The binary.
run install -D -m 0755 "$binary" "$bin_dir/singbox_exporter"

# 1b. Exact mode: sing-box with the V2Ray stats API. It replaces the one in
# $bin_dir in one rename, so sing-box is never missing or half written; the
# one it replaces stays as sing-box.prev (a hard link, so running it is no
# obstacle). A re-run with the same build keeps the previous one.
if [ -n "$v2ray_api" ]; then
  sb=$bin_dir/sing-box
  if [ -f "$sb" ] && cmp -s "$singbox_v2ray_binary" "$sb"; then
    echo "# $sb is already this build"
  else
    run install -D -m 0755 "$singbox_v2ray_binary" "$sb.tmp"
    if [ -f "$sb" ]; then
      run ln -f "$sb" "$sb.prev"
    fi
    run mv -f "$sb.tmp" "$sb"
  fi
fi

# 2. The user, which owns nothing but its state and reads its flags.
if [ -n "$prefix" ]; then
  echo "# --prefix: not creating user $user, not touching $singbox_dir's ownership"
elif ! id "$user" >/dev/null 2>&1; then
  run useradd --system --user-group --no-create-home --home-dir /var/lib/singbox_exporter \
    --shell /usr/sbin/nologin "$user"
fi
owner=root
[ -n "$prefix" ] || owner="root:$user"

# 3. Flags and token: written once, then the operator's.
run install -d -m 0750 "$conf_dir"
[ -n "$prefix" ] || run chown "$owner" "$conf_dir"
if [ -e "$conf_dir/flags" ]; then
  echo "# keeping $conf_dir/flags"
  [ -z "$v2ray_api" ] || keep_v2ray_flag
  [ -z "$singbox_api" ] || keep_api_flags
  [ -z "$device_key" ] || keep_device_key_flag
else
  echo "+ write $conf_dir/flags${v2ray_api:+ (exact mode: --singbox.v2ray-api=$v2ray_api)}"
  if [ "$dry_run" = no ]; then
    flags > "$conf_dir/flags.tmp"
    chmod 0640 "$conf_dir/flags.tmp"
    mv "$conf_dir/flags.tmp" "$conf_dir/flags"
  fi
fi
# The API service's secret: random, written once, readable by the exporter.
if [ -n "$singbox_api" ] && [ ! -e "$conf_dir/api-secret" ]; then
  echo "+ write $conf_dir/api-secret"
  if [ "$dry_run" = no ]; then
    (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$conf_dir/api-secret.tmp")
    chmod 0640 "$conf_dir/api-secret.tmp"
    mv "$conf_dir/api-secret.tmp" "$conf_dir/api-secret"
    [ -n "$prefix" ] || chown "$owner" "$conf_dir/api-secret"
  fi
fi
# The fleet's device key, as the API secret: readable by the exporter's
# group only. Given again, it replaces the installed one (a new fleet key);
# its bytes are never printed.
if [ -n "$device_key" ]; then
  if [ -f "$conf_dir/device-key" ] && cmp -s "$device_key_file" "$conf_dir/device-key"; then
    echo "# $conf_dir/device-key is already this key"
  else
    echo "+ install the device key from $device_key_file as $conf_dir/device-key (0640, $owner)"
    if [ "$dry_run" = no ]; then
      (umask 077; cat "$device_key_file" > "$conf_dir/device-key.tmp")
      chmod 0640 "$conf_dir/device-key.tmp"
      [ -n "$prefix" ] || chown "$owner" "$conf_dir/device-key.tmp"
      mv "$conf_dir/device-key.tmp" "$conf_dir/device-key"
    fi
  fi
fi
if [ -n "$token_file" ] && [ ! -e "$conf_dir/token" ]; then
  run install -m 0640 "$token_file" "$conf_dir/token"
  [ -n "$prefix" ] || run chown "$owner" "$conf_dir/token"
fi

# 4. The unit, with ReadWritePaths on the directory of the config it manages.
echo "+ write $unit_dir/singbox_exporter.service"
if [ "$dry_run" = no ]; then
  mkdir -p "$unit_dir"
  sed "s|^ReadWritePaths=/etc/sing-box\$|ReadWritePaths=$singbox_dir|" \
    "$here/singbox_exporter.service" > "$unit_dir/singbox_exporter.service.tmp"
  chmod 0644 "$unit_dir/singbox_exporter.service.tmp"
  mv "$unit_dir/singbox_exporter.service.tmp" "$unit_dir/singbox_exporter.service"
fi

# 5. sing-box's drop-in: flush the exporter before sing-box stops, since a
# stop restarts sing-box's counters and the bytes since the last poll would
# be lost. ExecStop runs before systemd sends SIGTERM; its leading "-" lets
# the stop go on whatever the flush answers.
dropin_dir=$unit_dir/sing-box.service.d
dropin=$dropin_dir/10-boxfleet-flush.conf
echo "+ write $dropin"
if flush=$(flush_command "$(flush_url)"); then
  if [ "$dry_run" = yes ]; then
    dropin_text "$flush" | sed 's/^/    /'
  else
    mkdir -p "$dropin_dir"
    dropin_text "$flush" > "$dropin.tmp"
    chmod 0644 "$dropin.tmp"
    mv "$dropin.tmp" "$dropin"
  fi
else
  echo "# no curl, wget or bash here: not writing $dropin; stopping sing-box loses the bytes since the exporter's last poll" >&2
fi
if grep -q '^--web\.config\.file=' "$conf_dir/flags" 2>/dev/null; then
  echo "# $conf_dir/flags sets --web.config.file: edit $dropin if it asks for TLS or a password" >&2
fi

[ -n "$prefix" ] && { echo "# --prefix: systemd left alone"; v2ray_notes; api_notes; exit 0; }

# 6. Let the agent replace sing-box's config: the directory's group is the
# exporter's (setgid keeps new files in it), and sing-box, if it runs as
# its own user, reads the config through that group.
if [ -n "$controller_url" ]; then
  [ -f "$singbox_config" ] || die "no sing-box config at $singbox_config"
  run chgrp "$user" "$singbox_dir" "$singbox_config"
  run chmod g+rwxs "$singbox_dir"
  run chmod g+rw "$singbox_config"
  if id sing-box >/dev/null 2>&1; then
    run usermod -a -G "$user" sing-box
  fi
fi

# 7. Enable, and start unless told not to; the reload also makes systemd
# read sing-box's drop-in.
run systemctl daemon-reload
if [ "$start" = yes ]; then
  run systemctl enable --now singbox_exporter.service
else
  run systemctl enable singbox_exporter.service
fi
v2ray_notes
api_notes
