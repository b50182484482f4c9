#!/usr/bin/env bash
# MCP benchmark: `wait_for_message` latency, from the end of SMTP DATA to the tool's
# result read by the client, p50/p99 over N messages (default 200), beside the SSE
# stream's latency for the same messages measured in the same run (the reference;
# target: MCP p99 < 20 ms, like the stream). SQLite, then PostgreSQL when it is up.
# Usage: bench/mcp.sh [N]        (PROFILE=debug for an unoptimised build)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"; PROFILE="${PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sendmux-target}"
PGURL="${SENDMUX_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --example bench_mcp
  BENCH="$CARGO_TARGET_DIR/release/examples/bench_mcp"
else
  cargo build --quiet --example bench_mcp
  BENCH="$CARGO_TARGET_DIR/debug/examples/bench_mcp"
fi
mkdir -p bench/results
out=bench/results/mcp.txt
echo "# $(date -u +%FT%TZ) $(nproc) cores, $PROFILE build" | tee "$out"
SENDMUX_LOG=warn "$BENCH" latency "$N" | tee -a "$out"
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  db="sendmux_bench_$$"; psql "$PGURL" -qc "CREATE DATABASE $db" >/dev/null
  SENDMUX_LOG=warn BENCH_DATABASE_URL="${PGURL%/*}/$db" "$BENCH" latency "$N" | tee -a "$out"
  psql "$PGURL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi
