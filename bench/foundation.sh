#!/usr/bin/env bash
# Control-plane benchmark (issue: foundation). Measures authenticated reads beside
# /healthz of the same binary in the same run:
#   GET /api/v1/keys    with an infrastructure key
#   GET /api/v1/mailbox with a mailbox key
# 64 connections (wrk -t2 -c64) for DURATION seconds each, on SQLite and, when
# reachable, PostgreSQL. Usage: bench/foundation.sh [DURATION]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/sendmux"
PGURL="${SENDMUX_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
mkdir -p bench/results

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rps() { wrk -t2 -c64 -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'; }

run_store() {
  local store="$1" dir port base admin db=""
  dir="$(mktemp -d)"; port="$(free_port)"; base="http://127.0.0.1:$port"; admin="bench-admin-token-0123456789"
  local env=(SENDMUX_DATA_DIR="$dir" SENDMUX_HTTP_ADDR="127.0.0.1:$port" SENDMUX_SMTP_ADDR="127.0.0.1:0"
             SENDMUX_ADMIN_TOKEN="$admin" SENDMUX_RATE_LIMIT_PER_MINUTE=100000000 SENDMUX_LOG=warn)
  if [ "$store" = postgres ]; then
    db="sendmux_bench_$$"
    psql "$PGURL" -qc "CREATE DATABASE $db" >/dev/null
    env+=(SENDMUX_DATABASE_URL="${PGURL%/*}/$db")
  fi
  env "${env[@]}" "$BIN" serve >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$base/api/v1/admin/teams" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"Bench","owner_email":"bench@example.com","owner_password":"bench password 123"}' >/dev/null
  local token infra mbx mkey
  token=$(curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password 123"}' | jq -r .token)
  infra=$(curl -sf "$base/api/v1/keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench","kind":"infrastructure","permissions":["keys.manage","mailboxes.manage","logs.read"]}' | jq -r .key)
  mbx=$(curl -sf "$base/api/v1/mailboxes" -H "authorization: Bearer $infra" -H 'content-type: application/json' \
    -d '{"address":"bench@localhost"}' | jq -r .id)
  mkey=$(curl -sf "$base/api/v1/keys" -H "authorization: Bearer $infra" -H 'content-type: application/json' \
    -d "{\"name\":\"reader\",\"kind\":\"mailbox\",\"mailbox_id\":\"$mbx\"}" | jq -r .key)
  # Warm up, then measure the reference and the two authenticated reads.
  wrk -t2 -c64 -d2s "$base/healthz" >/dev/null
  local h k m
  h=$(rps "$base/healthz")
  k=$(rps -H "Authorization: Bearer $infra" "$base/api/v1/keys")
  m=$(rps -H "Authorization: Bearer $mkey" "$base/api/v1/mailbox")
  local rss; rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  kill -TERM "$pid"; wait "$pid" || true
  [ -n "$db" ] && psql "$PGURL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
  rm -rf "$dir"
  python3 - "$store" "$h" "$k" "$m" "$rss" <<'PY'
import sys
store, h, k, m, rss = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
print(f"{store:9s} /healthz {h:10.0f} req/s | GET /api/v1/keys (infra key) {k:9.0f} req/s = {k/h:.2f} x healthz"
      f" | GET /api/v1/mailbox (mailbox key) {m:9.0f} req/s = {m/h:.2f} x healthz | RSS {rss/1024:.0f} MiB")
PY
}

{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, wrk -t2 -c64 -d${DURATION}s, release build"
  run_store sqlite
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then run_store postgres; fi
} | tee bench/results/foundation.txt
