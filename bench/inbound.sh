#!/usr/bin/env bash
# Inbound SMTP ingest benchmark (docs/PERFORMANCE.md, "Inbound").
#
# Postfix's smtp-source sends 10 KB messages over 20 concurrent connections, first to
# Postfix's smtp-sink (accepts and stores nothing: the reference ceiling), then to
# `sendmux serve` on SQLite and on PostgreSQL, which store every message durably with
# its event before answering 250. Prints messages/s, the ratio to smtp-sink in the same
# run, p50/p99 end of DATA -> 250 (server side), and checks every message was stored.
#
# usage: bench/inbound.sh            (env: MESSAGES=20000 SESSIONS=20 SIZE=10240, ROUNDS=3,
#                                     PG_URL=postgres://postgres@127.0.0.1:5432/postgres,
#                                     SKIP_PG=1 to measure SQLite only, SKIP_SQLITE=1
#                                     for PostgreSQL only)
# installs postfix (smtp-source, smtp-sink), curl, psql and python's dnslib when missing; run
# as root (smtp-sink drops privileges to `nobody`).
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${MESSAGES:-20000}"
SESSIONS="${SESSIONS:-20}"
ROUNDS="${ROUNDS:-3}"
SIZE="${SIZE:-10240}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
SINK_PORT=25251

# The loaders come from Debian's postfix package; the test DNS server needs dnslib.
need() { for tool in smtp-source smtp-sink curl psql python3; do command -v "$tool" >/dev/null || return 1; done; }
if ! need; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix curl postgresql-client python3 python3-pip >/dev/null
  need || { echo "missing a tool: smtp-source smtp-sink curl psql python3"; exit 1; }
fi
python3 -c "import dnslib" 2>/dev/null || python3 -m pip install --quiet dnslib

cargo build --release --quiet
# Let the build's files reach the disk first: their writeback slows every fsync measured.
sync
BIN="$CARGO_TARGET_DIR/release/sendmux"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):.0f}')"; }

send() { # host:port recipient
  smtp-source -d -s "$SESSIONS" -l "$SIZE" -m "$MESSAGES" -f bench@sender.test -M client.test -t "$2" "$1"
}

# --- reference: smtp-sink, measured right before each sendmux run ------------------
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256 &
PIDS+=($!)
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null && break; sleep 0.1; done
measure_sink() { # sets SINK_RATE
  local t0 t1
  t0=$(now); send "127.0.0.1:$SINK_PORT" box@localhost; t1=$(now)
  SINK_RATE=$(rate "$MESSAGES" "$t0" "$t1")
  echo "smtp-sink:          $SINK_RATE msg/s"
}

# --- a DNS server for SPF/DKIM/DMARC lookups (no records: every answer is NXDOMAIN) -
echo '{}' > "$WORK/dns.json"
python3 tests/support/dns_server.py "$WORK/dns.json" > "$WORK/dns.port" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/dns.port" ] && break; sleep 0.1; done
DNS="127.0.0.1:$(head -n1 "$WORK/dns.port")"

run_sendmux() { # label [database url]
  measure_sink
  local label="$1" url="${2:-}" dir="$WORK/$1-$ROUND"
  mkdir -p "$dir"
  local env=(SENDMUX_DATA_DIR="$dir" SENDMUX_HTTP_ADDR=127.0.0.1:0 SENDMUX_SMTP_ADDR=127.0.0.1:0
    SENDMUX_ADMIN_TOKEN=bench-admin-token-0123456789 SENDMUX_DNS_SERVER="$DNS" SENDMUX_LOG_FORMAT=json
    SENDMUX_LOG=warn,sendmux=info)
  [ -n "$url" ] && env+=(SENDMUX_DATABASE_URL="$url")
  env "${env[@]}" "$BIN" serve 2> "$dir/log" &
  local pid=$!
  PIDS+=($pid)
  local http="" smtp=""
  for _ in $(seq 100); do
    http=$(python3 -c "import json,sys
for l in open('$dir/log'):
    try: f=json.loads(l).get('fields',{})
    except Exception: continue
    if 'http' in f: print(f['http'], f['smtp']); break" 2>/dev/null || true)
    [ -n "$http" ] && break; sleep 0.1
  done
  read -r http smtp <<< "$http"
  local admin=(-s -H "Authorization: Bearer bench-admin-token-0123456789" -H 'Content-Type: application/json')
  curl "${admin[@]}" -d '{"name":"Bench","owner_email":"owner@bench.test","owner_password":"bench password 123"}' \
    "http://$http/api/v1/admin/teams" > /dev/null
  local token
  token=$(curl -s -H 'Content-Type: application/json' -d '{"email":"owner@bench.test","password":"bench password 123"}' \
    "http://$http/api/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"address":"box@localhost"}' \
    "http://$http/api/v1/mailboxes" > /dev/null

  t0=$(now); send "$smtp" box@localhost; t1=$(now)
  local r; r=$(rate "$MESSAGES" "$t0" "$t1")
  local stored events
  stored=$(curl -s "http://$http/metrics" | awk '/^sendmux_inbound_messages_total/ {s+=$2} END {print s+0}')
  events=$(curl -s -H "Authorization: Bearer $token" "http://$http/api/v1/events?limit=1" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(len(d))')
  local q
  q=$(curl -s "http://$http/metrics" | python3 -c '
import sys
qs = {}
for l in sys.stdin:
    if "{quantile=\"0.5\"}" in l or "{quantile=\"0.99\"}" in l:
        name, rest = l.split("{", 1)
        qs[(name, rest.split("\"")[1])] = float(l.split()[-1])
ms = lambda n, q: qs.get((n, q), 0) * 1000
reply, blob, commit = "sendmux_smtp_data_to_reply_seconds", "sendmux_inbound_blob_write_seconds", "sendmux_inbound_commit_seconds"
p50, p99 = "0.5", "0.99"
batch = qs.get(("sendmux_inbound_commit_batch_size", p50), 0)
print(f"p50 {ms(reply, p50):.1f} ms, p99 {ms(reply, p99):.1f} ms (p50 of stages: body write {ms(blob, p50):.1f} ms,"
      f" commit {ms(commit, p50):.1f} ms for {batch:.0f} messages)")')
  local ratio; ratio=$(python3 -c "print(f'{$r / $SINK_RATE:.2f}')")
  echo "$ratio" >> "$WORK/ratios-$label"
  echo "sendmux ($label): $r msg/s = $ratio x smtp-sink; stored $stored/$MESSAGES (events readable: $events); end of DATA -> 250: $q"
  [ "$stored" = "$MESSAGES" ] || { echo "not every message was stored"; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# Rounds alternate the reference and each store, every run against the sink measured
# just before it, so a machine that speeds up or slows down moves both sides of a ratio
# alike; the median of each store's ratios is the figure.
for ROUND in $(seq 1 "$ROUNDS"); do
  [ -z "${SKIP_SQLITE:-}" ] && run_sendmux sqlite
  if [ -z "${SKIP_PG:-}" ]; then
    DB="sendmux_bench_$$_$ROUND"
    psql -q "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null
    run_sendmux postgres "${PG_URL%/*}/$DB" || { psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; exit 1; }
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  fi
done
for f in "$WORK"/ratios-*; do
  [ -e "$f" ] || continue
  echo "${f##*ratios-}: median $(python3 -c "import statistics, sys; print(statistics.median(float(l) for l in open(sys.argv[1])))" "$f") x smtp-sink over $ROUNDS rounds ($(paste -sd' ' "$f"))"
done
