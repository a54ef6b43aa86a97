#!/bin/sh
# Runs sing-box with its pid in the shared volume. The exporter shares this
# container's pid namespace, reads the pid there and sends SIGHUP after it
# applied a new user set.
set -eu
dir=${NODE_DIR:-/node}
echo $$ > "$dir/sing-box.pid"
exec sing-box run -c "$dir/config.json" -D "$dir"
