#!/bin/sh
# Installs singbox_exporter on a sing-box node as a hardened systemd service.
# It installs the binary it is given and downloads nothing. It also gives
# sing-box's unit a drop-in, sing-box.service.d/10-boxfleet-flush.conf, whose
# ExecStop asks the exporter to flush (POST /-/flush: poll, count, write the
# state) before systemd stops sing-box, so `systemctl stop` or `restart
# sing-box` and package upgrades lose no traffic. The flush uses curl, else
# wget, else bash; it gives up after 15 s and never prevents the stop.
#
#   install-node.sh --binary ./singbox_exporter \
#     --controller-url https://boxfleet.example.com --token-file ./node.token \
#     --node-name fra-1 --node-address fra-1.example.com --label region=eu
#
# Options:
#   --binary PATH          singbox_exporter to install (required)
#   --controller-url URL   run the node agent against this controller; without
#                          it the exporter only serves metrics
#   --token-file PATH      the node token `boxfleet node add` printed
#   --node-name NAME       default: this host's name
#   --node-address HOST    public host clients dial; default: --node-name
#   --label KEY=VALUE      node label (region, group, ...); repeatable
#   --singbox-config PATH  sing-box config the agent manages (/etc/sing-box/config.json)
#   --singbox-binary PATH  sing-box, for `sing-box check` (default: from PATH)
#   --prefix DIR           install under DIR instead of / (packaging, tests):
#                          no user is created, systemd is not touched
#   --no-start             install and enable, but do not start
#   --dry-run              print what would be done, change nothing
#
# Re-running upgrades the binary and the unit and keeps an existing flags
# file and token, so an operator's edits survive.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary= controller_url= token_file= node_name= node_address= labels=
singbox_config=/etc/sing-box/config.json singbox_binary=
prefix= start=yes dry_run=no

die() { echo "install-node: $*" >&2; exit 1; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --binary) need "$@"; binary=$2; shift ;;
    --controller-url) need "$@"; controller_url=$2; shift ;;
    --token-file) need "$@"; token_file=$2; shift ;;
    --node-name) need "$@"; node_name=$2; shift ;;
    --node-address) need "$@"; node_address=$2; shift ;;
    --label) need "$@"; case $2 in *=*) ;; *) die "--label wants KEY=VALUE, got $2" ;; esac
      labels="$labels
$2"; shift ;;
    --singbox-config) need "$@"; singbox_config=$2; shift ;;
    --singbox-binary) need "$@"; singbox_binary=$2; shift ;;
    --prefix) need "$@"; prefix=${2%/}; shift ;;
    --no-start) start=no ;;
    --dry-run) dry_run=yes ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

[ -n "$binary" ] || die "--binary is required"
[ -f "$binary" ] || die "no such binary: $binary"
if [ -n "$controller_url" ]; then
  [ -n "$token_file" ] || die "--controller-url needs --token-file"
  [ -f "$token_file" ] || die "no such token file: $token_file"
fi
[ -n "$node_name" ] || node_name=$(hostname)
[ -n "$node_address" ] || node_address=$node_name
[ -n "$singbox_binary" ] || singbox_binary=$(command -v sing-box || echo /usr/bin/sing-box)
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
      -v cfg="$singbox_config" -v sb="$singbox_binary" -v labels="$labels" '
    function set(flag, value) { print flag "=" value }
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
else
  echo "+ write $conf_dir/flags"
  if [ "$dry_run" = no ]; then
    flags > "$conf_dir/flags.tmp"
    chmod 0640 "$conf_dir/flags.tmp"
    mv "$conf_dir/flags.tmp" "$conf_dir/flags"
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

[ -n "$prefix" ] && { echo "# --prefix: systemd left alone"; exit 0; }

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
