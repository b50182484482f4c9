#!/usr/bin/env bash
# Events-out benchmarks (webhooks and the SSE stream).
# Usage: [PARTS=abc] bench/events.sh [EVENTS] [STREAMS] [streams-h2|streams|ws]
#   streams-h2: HTTP/2, 200 streams per connection, opened one connection at a time;
#   streams: one HTTP/1.1 connection per stream;
#   ws: one WebSocket (an upgraded HTTP/1.1 connection) per stream.
#   PARTS picks which of (a), (b), (c) run (all by default).
#   (a) webhook deliveries per second to a local receiver answering 200 at once, beside
#       a plain HTTP client driving the same receiver (reference), SQLite and PostgreSQL;
#   (b) STREAMS concurrent GET /api/v1/mailbox/events streams held by one server
#       process, and its resident memory per stream;
#   (c) end of SMTP DATA -> event on a live stream, and -> webhook received, p50/p99
#       at 200 messages/s (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-20000}"; STREAMS="${2:-20000}"; MODE="${3:-streams-h2}"; PARTS="${PARTS:-abc}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
PGURL="${SENDMUX_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release --quiet --example bench_events --bin sendmux
BIN="$CARGO_TARGET_DIR/release/sendmux"; BENCH="$CARGO_TARGET_DIR/release/examples/bench_events"
mkdir -p bench/results
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
out=bench/results/events.txt
echo "# $(date -u +%FT%TZ) $(nproc) cores, release build" | tee "$out"

if [[ $PARTS == *a* ]]; then
SENDMUX_LOG=warn "$BENCH" webhooks "$EVENTS" | tee -a "$out"
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  db="sendmux_bench_$$"; psql "$PGURL" -qc "CREATE DATABASE $db" >/dev/null
  SENDMUX_LOG=warn BENCH_DATABASE_URL="${PGURL%/*}/$db" "$BENCH" webhooks "$EVENTS" | tee -a "$out"
  psql "$PGURL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi

fi

# (c) end of SMTP DATA -> event on a stream / -> webhook, at 200 messages/s.
if [[ $PARTS == *c* ]]; then
SENDMUX_LOG=warn "$BENCH" latency 200 | tee -a "$out"
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  db="sendmux_bench_$$"; psql "$PGURL" -qc "CREATE DATABASE $db" >/dev/null
  SENDMUX_LOG=warn BENCH_DATABASE_URL="${PGURL%/*}/$db" "$BENCH" latency 200 | tee -a "$out"
  psql "$PGURL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi

fi

# (b) streams held by one server process.
[[ $PARTS == *b* ]] || exit 0
dir="$(mktemp -d)"; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"; admin="bench-admin-token-0123456789"
SENDMUX_DATA_DIR="$dir" SENDMUX_HTTP_ADDR="127.0.0.1:$port" SENDMUX_SMTP_ADDR=127.0.0.1:0 SENDMUX_ADMIN_TOKEN="$admin" \
  SENDMUX_STREAM_MAX_PER_KEY=1000000 SENDMUX_RATE_LIMIT_PER_MINUTE=100000000 SENDMUX_LOG=warn "$BIN" serve >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/api/v1/admin/teams" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"name":"Bench","owner_email":"bench@example.com","owner_password":"bench password 123"}' >/dev/null
token=$(curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"bench password 123"}' | jq -r .token)
mbx=$(curl -sf "$base/api/v1/mailboxes" -H "authorization: Bearer $token" -H 'content-type: application/json' -d '{"address":"bench@localhost"}' | jq -r .id)
key=$(curl -sf "$base/api/v1/keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"name\":\"reader\",\"kind\":\"mailbox\",\"mailbox_id\":\"$mbx\"}" | jq -r .key)
curl -sf "$base/api/v1/mailbox" -H "authorization: Bearer $key" >/dev/null
sleep 1
before=$(ps -o rss= -p "$pid" | tr -d ' ')
fifo="$dir/hold"; mkfifo "$fifo"
"$BENCH" "$MODE" "$STREAMS" "$base" "$key" <"$fifo" >"$dir/streams.log" 2>&1 &
client=$!
exec 3>"$fifo"
for _ in $(seq 1 600); do grep -qE "(streams|websockets) open" "$dir/streams.log" 2>/dev/null && break; kill -0 $client 2>/dev/null || break; sleep 0.5; done
cat "$dir/streams.log"
sleep 2
after=$(ps -o rss= -p "$pid" | tr -d ' ')
exec 3>&-
wait $client || true
kill -TERM "$pid"; wait "$pid" || true
rm -rf "$dir"
python3 - "$STREAMS" "$before" "$after" "$MODE" <<'PY' | tee -a bench/results/events.txt
import sys
n, before, after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"sqlite    streams ({sys.argv[4]}): {n} open on one process | RSS {before/1024:.0f} MiB before, {after/1024:.0f} MiB with them"
      f" = {(after-before)/n:.1f} KiB per stream")
PY
