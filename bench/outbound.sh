#!/usr/bin/env bash
# Outbound benchmark (docs/PERFORMANCE.md, "Outbound"). Builds the release binary and
# installs wrk, postfix's smtp-sink, sqlite3 and psql when missing; the PostgreSQL run
# needs a server at 127.0.0.1:5432. Usage: bench/outbound.sh [seconds per wrk run, default 5]
# (env ROUNDS=3: alternating rounds of /healthz and sends; the median ratio is reported;
# SKIP_SQLITE=1 for PostgreSQL only; ON_SENDS=command runs 1 s into each round of sends,
# for example a profiler: ON_SENDS="perf record -a -g -o /tmp/perf.data -- sleep 3")
#
# (a) accepted sends per second: POST /api/v1/emails with a 2 KB body over 64
#     connections, beside GET /healthz of the same binary in the same run; on SQLite
#     and on PostgreSQL. Workers are off (SENDMUX_OUTBOUND_WORKERS=0) so this measures
#     acceptance: validate, commit message + event, answer 202.
# (b) delivered per second: the queue filled in (a) is drained by the workers of a
#     fresh process into smtp-sink over pooled connections, timed from start to the
#     last message recorded as delivered.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
ROUNDS="${ROUNDS:-3}"
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1"; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
# The loaders come from Debian: wrk, postfix (smtp-sink), sqlite3, and psql.
need() { for tool in wrk smtp-sink sqlite3 psql jq curl python3; do command -v "$tool" >/dev/null || return 1; done; }
if ! need; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postfix sqlite3 postgresql-client jq curl python3 >/dev/null
  need || { echo "missing a tool: wrk smtp-sink sqlite3 psql jq curl python3"; exit 1; }
fi
# Always build: a stale release binary would measure old code.
cargo build --release --quiet
# Let the build's files reach the disk first: their writeback slows every fsync measured.
sync
BIN="$CARGO_TARGET_DIR/release/sendmux"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SINK_PORT=$(free_port)
if [ "$(id -u)" = 0 ]; then smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1024 & else smtp-sink "127.0.0.1:$SINK_PORT" 1024 & fi
PIDS+=($!)

BODY=$(python3 - <<'PY'
import json
text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40)[:1800]
print(json.dumps({"from": "Bench <bench@example.com>", "to": ["reader@example.org"],
                  "subject": "Benchmark message", "text": text}))
PY
)
cat > "$WORK/send.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SEND_KEY")
wrk.body = [[$BODY]]
LUA

start_server() { # $1 data dir, $2 port, $3 workers, $4 database url (optional)
  local env=(SENDMUX_DATA_DIR="$1" SENDMUX_HTTP_ADDR="127.0.0.1:$2" SENDMUX_SMTP_ADDR="127.0.0.1:0"
    SENDMUX_SIGNUP=open SENDMUX_LIMIT_SENDING_RATE_PER_MINUTE=100000000 SENDMUX_RATE_LIMIT_PER_MINUTE=100000000
    SENDMUX_OUTBOUND_WORKERS="$3" SENDMUX_LOG=warn SENDMUX_DATABASE_MAX_CONNECTIONS=32
    SENDMUX_PROVIDER_ALLOWED_NETWORKS=127.0.0.0/8)
  [ -n "${4:-}" ] && env+=(SENDMUX_DATABASE_URL="$4")
  env "${env[@]}" "$BIN" serve >"$WORK/server-$2.log" 2>&1 &
  SERVER=$!
  PIDS+=($SERVER)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$WORK/server-$2.log"; exit 1
}

setup_team() { # $1 port -> prints the sending key
  local base="http://127.0.0.1:$1/api/v1" token prv grp
  token=$(curl -sf "$base/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\": \"bench-$RANDOM@example.com\", \"password\": \"a long bench passphrase\", \"team_name\": \"Bench\"}" | jq -r .token)
  prv=$(curl -sf "$base/providers" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\": \"sink\", \"type\": \"smtp\", \"config\": {\"host\": \"127.0.0.1\", \"port\": $SINK_PORT, \"security\": \"none\"}}" | jq -r .id)
  grp=$(curl -sf "$base/delivery-groups" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\": \"bench\", \"strategy\": \"failover\", \"members\": [{\"provider_id\": \"$prv\"}]}" | jq -r .id)
  curl -sf "$base/keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\": \"bench\", \"kind\": \"sending\", \"delivery_group_id\": \"$grp\"}" | jq -r .key
}

rps() { awk '/Requests\/sec/ {print $2}'; }

accept_run() { # $1 label, $2 database url (optional) ; sets DIR PORT
  DIR="$WORK/data-$1"; PORT=$(free_port)
  start_server "$DIR" "$PORT" 0 "${2:-}"
  SEND_KEY=$(setup_team "$PORT"); export SEND_KEY
  wrk -t2 -c64 -d2s "http://127.0.0.1:$PORT/healthz" >/dev/null  # warm up
  # Rounds alternate the reference and the sends, so a machine that speeds up or slows
  # down during the run moves both sides of each round's ratio alike; the median of
  # the rounds' ratios is the figure.
  local ratios=() health sends non2xx out
  for round in $(seq 1 "$ROUNDS"); do
    health=$(wrk -t2 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/healthz" | rps)
    local hook=""
    if [ -n "${ON_SENDS:-}" ]; then (sleep 1; $ON_SENDS) & hook=$!; fi
    out=$(wrk -t2 -c64 -d"${SECS}s" -s "$WORK/send.lua" "http://127.0.0.1:$PORT/api/v1/emails")
    [ -z "$hook" ] || wait "$hook"
    sends=$(echo "$out" | rps)
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    ratios+=("$(python3 -c "print(round($sends/$health, 3))")")
    echo "$1 round $round: /healthz ${health} req/s, POST /emails ${sends} req/s (non-2xx: ${non2xx:-0}), ratio ${ratios[-1]}"
  done
  echo "$1: median ratio $(python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:])), 3))' "${ratios[@]}") over $ROUNDS rounds (POST /emails req/s ÷ /healthz req/s)"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
}

drain_run() { # $1 label, $2 database url (optional), $3 count query runner
  local port t0 total done_n
  port=$(free_port)
  total=$($3 "SELECT COUNT(*) FROM outbound_messages WHERE status = 'queued'")
  t0=$(date +%s.%N)
  start_server "$DIR" "$port" "${WORKERS:-4}" "${2:-}"
  while :; do
    done_n=$($3 "SELECT COUNT(*) FROM outbound_messages WHERE status = 'queued' OR status = 'sending'")
    [ "$done_n" = 0 ] && break
    sleep 0.2
  done
  local t1; t1=$(date +%s.%N)
  local delivered; delivered=$($3 "SELECT COUNT(*) FROM outbound_messages WHERE status = 'delivered'")
  echo "$1: delivered $delivered of $total queued in $(python3 -c "print(round($t1-$t0, 2))") s = $(python3 -c "print(round($delivered/($t1-$t0)))") msg/s into smtp-sink (includes process start)"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
}

if [ -z "${SKIP_SQLITE:-}" ]; then
  echo "== SQLite"
  accept_run sqlite
  sq() { sqlite3 -cmd ".timeout 10000" "$DIR/sendmux.db" "$1" 2>/dev/null || echo -1; }
  drain_run sqlite "" sq
fi

if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "== PostgreSQL"
  DB="sendmux_bench_$$"
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
  PGURL="postgres://postgres@127.0.0.1:5432/$DB"
  accept_run postgres "$PGURL"
  pq() { psql -tA -h 127.0.0.1 -U postgres -d "$DB" -c "$1"; }
  drain_run postgres "$PGURL" pq
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $DB WITH (FORCE)" postgres
fi
