#!/usr/bin/env bash
# The cost model on PostgreSQL (docs/PERFORMANCE.md, "Cost model"): statements the
# database runs per operation, counted by pg_stat_statements — a count, not a time, so
# it does not depend on the machine. Starts a private PostgreSQL (initdb + pg_ctl, with
# pg_stat_statements preloaded) and one release node on it without the worker role, then
# for each operation resets the counters, runs it N times and divides:
#   a cached authenticated read (GET /api/v1/keys, infrastructure key), target 0
#   an accepted send (POST /api/v1/emails, sending key, 64 at a time)
#   an inbound message over SMTP (smtp-source, 20 sessions)
# Top-level statements only (pg_stat_statements.track=top: a foreign key's check inside
# an INSERT is not a round trip). The listener's heartbeat (SELECT 1 every 5 s) is shown
# apart. Usage: bench/cost.sh [INBOUND_MESSAGES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"     # inbound messages per run
SECS="${2:-5}"     # seconds of wrk per run (reads, sends: wrk's count of requests is used)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
need() { for tool in wrk smtp-source curl jq python3; do command -v "$tool" >/dev/null || return 1; done; }
if ! need; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postfix curl jq python3 >/dev/null
fi
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/sendmux"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
WORK=$(mktemp -d); chmod 755 "$WORK"
PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PGPORT=$(free_port)
mkdir "$WORK/pg"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust --no-sync -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w -o "-c port=$PGPORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$WORK/pg -c shared_preload_libraries=pg_stat_statements \
  -c pg_stat_statements.track=top -c fsync=off -c max_connections=200" start >/dev/null
PG="postgres://postgres@127.0.0.1:$PGPORT"
psql() { command psql "$PG/sendmux" -qAtX "$@"; }
command psql "$PG/postgres" -qc "CREATE DATABASE sendmux" >/dev/null
psql -c "CREATE EXTENSION pg_stat_statements"

PORT=$(free_port); SMTP=$(free_port); BASE="http://127.0.0.1:$PORT"
env SENDMUX_DATA_DIR="$WORK/data" SENDMUX_HTTP_ADDR="127.0.0.1:$PORT" SENDMUX_SMTP_ADDR="127.0.0.1:$SMTP" \
  SENDMUX_DATABASE_URL="$PG/sendmux" SENDMUX_ROLES=api,smtp SENDMUX_SIGNUP=open SENDMUX_LOG=warn \
  SENDMUX_RATE_LIMIT_PER_MINUTE=100000000 SENDMUX_LIMIT_SENDING_RATE_PER_MINUTE=100000000 \
  SENDMUX_INBOUND_DOMAINS=bench.test SENDMUX_DNS_SERVER=off SENDMUX_PROVIDER_ALLOWED_NETWORKS=127.0.0.0/8 \
  "$BIN" serve >"$WORK/node.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

api() { curl -sf "$BASE/api/v1/$1" -H "authorization: Bearer $2" -H 'content-type: application/json' -d "$3"; }
TOKEN=$(curl -sf "$BASE/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email": "cost@example.com", "password": "a long bench passphrase", "team_name": "Cost"}' | jq -r .token)
INFRA=$(api keys "$TOKEN" '{"name":"infra","kind":"infrastructure","permissions":["keys.manage","mailboxes.manage"]}' | jq -r .key)
api mailboxes "$INFRA" '{"address":"inbox@bench.test"}' >/dev/null
PRV=$(api providers "$TOKEN" '{"name":"nowhere","type":"smtp","config":{"host":"127.0.0.1","port":9,"security":"none"}}' | jq -r .id)
GRP=$(api delivery-groups "$TOKEN" "{\"name\":\"g\",\"strategy\":\"failover\",\"members\":[{\"provider_id\":\"$PRV\"}]}" | jq -r .id)
SEND_KEY=$(api keys "$TOKEN" "{\"name\":\"send\",\"kind\":\"sending\",\"delivery_group_id\":\"$GRP\"}" | jq -r .key)
export SEND_KEY
cat > "$WORK/send.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SEND_KEY")
wrk.body = '{"from": "Bench <bench@example.com>", "to": ["reader@example.org"], "subject": "Cost", "text": "Counting statements."}'
LUA

# Every operation is warmed (caches filled, statements prepared), then counted alone.
measure() { # $1 label, $2 operations, then the command that runs them
  local label="$1" ops="$2"; shift 2
  "$@" >/dev/null 2>&1   # warm-up round
  sleep 0.3
  psql -c "SELECT pg_stat_statements_reset()" >/dev/null
  "$@" >"$WORK/run.out" 2>&1
  sleep 0.3
  # wrk says how many requests it made; smtp-source sends exactly what it was told.
  local made; made=$(awk '/requests in/ {print $1}' "$WORK/run.out")
  ops="${made:-$ops}"
  psql -F $'\t' -c "SELECT calls, rows, regexp_replace(left(query, 110), '\s+', ' ', 'g') FROM pg_stat_statements
      WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC" > "$WORK/$label.txt"
  python3 - "$label" "$ops" "$WORK/$label.txt" <<'PY'
import sys
label, ops, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.split("\t", 2) for l in open(path).read().splitlines() if l.strip()]
# The listener's heartbeat is `SELECT 1` (normalised `SELECT $1`) and its LISTEN.
idle = lambda q: q.strip() in ("SELECT $1", "SELECT 1") or q.startswith("LISTEN")
heartbeat = sum(int(c) for c, _, q in rows if idle(q))
work = [(int(c), q) for c, _, q in rows if not idle(q)]
total = sum(c for c, _ in work)
tx = sum(c for c, q in work if q.startswith("BEGIN"))
print(f"{label}: {total/ops:.3f} statements per operation ({total} for {ops}), "
      f"{tx/ops:.3f} transactions per operation; heartbeat statements meanwhile: {heartbeat}")
for c, q in work[:12]:
    print(f"    {c/ops:8.3f}  {q}")
PY
}
reads() { wrk -t2 -c64 -d"${SECS}s" -H "Authorization: Bearer $INFRA" "$BASE/api/v1/keys"; }
sends() { wrk -t2 -c64 -d"${SECS}s" -s "$WORK/send.lua" "$BASE/api/v1/emails"; }
inbound() { smtp-source -d -s 20 -l 2048 -m "$N" -f bench@sender.test -M client.test -t inbox@bench.test "127.0.0.1:$SMTP"; }

{
  echo "# $(date -u +%FT%TZ) cost model on PostgreSQL $(command psql "$PG/postgres" -qAtXc 'SHOW server_version'): wrk -t2 -c64 -d${SECS}s, $N inbound messages over 20 sessions"
  measure "cached authenticated read" 0 reads
  measure "accepted send" 0 sends
  measure "inbound message" "$N" inbound
} | { mkdir -p bench/results; tee bench/results/cost.txt; }
