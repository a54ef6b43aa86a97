#!/bin/sh
# Creates the secret files docker-compose.yml mounts, with fresh random
# values, and leaves every file that already exists alone (so running it
# again never rotates a password MySQL already holds).
#
#   docker/gen-secrets.sh [DIR]     (default: docker/secrets)
#
# Compose mounts these files into containers that run as unprivileged users,
# so the files are world-readable; the directory is not.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"

random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

# put NAME VALUE: write without a trailing newline (Grafana's __FILE and
# some entrypoints take the content verbatim).
put() {
  [ -e "$dir/$1" ] && return 0
  printf '%s' "$2" > "$dir/$1.tmp"
  chmod 644 "$dir/$1.tmp"
  mv "$dir/$1.tmp" "$dir/$1"
  echo "created $dir/$1"
}

put mysql_root_password "$(random)"
put mysql_password "$(random)"
put boxfleet_db_dsn "boxfleet:$(cat "$dir/mysql_password")@tcp(mysql:3306)/boxfleet"
put boxfleet_admin_token "$(random)"
put grafana_admin_password "$(random)"
# Alertmanager's Telegram receiver; replace with the token @BotFather gave.
put telegram_bot_token "replace-with-your-telegram-bot-token"
# The chat (a number; negative for groups) the bot posts alerts to.
put telegram_chat_id "0"
# The demo node's token: `boxfleet node add` prints it (see README).
put boxfleet_node_token "replace-with-the-token-of-boxfleet-node-add"
