#!/usr/bin/env bash
# Load test of `braid serve` on loopback with wrk (Debian: `apt-get install wrk`).
#
#   1. zero-latency mode 1 (workflows/mode1-manual.yaml without its `latency:` lines) with
#      `?wait=true`, on the memory store and on SQLite: requests/s, p50/p99, errors;
#   2. mode 1 with its real latencies (critical path 2,650 ms) at 500 concurrent requests.
#
# Every request goes to 127.0.0.1 only, and each step stops after DURATION (REAL_DURATION).
# Figures and the machine they were taken on: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
REAL_DURATION=${REAL_DURATION:-30s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18123}

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
cargo build --quiet --release -p braid-cli
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/wf"
sed '/latency:/d; s/^name: mode1-manual$/name: mode1-zero/' workflows/mode1-manual.yaml >"$work/wf/mode1-zero.yaml"
cp workflows/mode1-manual.yaml "$work/wf/"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"inputs": {"query": "how do I rotate keys?"}}'
wrk.headers["Content-Type"] = "application/json"
LUA

serve() {
  target/release/braid serve "$work/wf" --store "$1" --listen "127.0.0.1:$PORT" --max-runs 2048 \
    >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "braid serve did not start:" >&2
  cat "$work/serve.log" >&2
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" || true
}

for store in memory "sqlite:$work/serve.db"; do
  echo "== zero-latency mode 1, ?wait=true, store $store, $CONNS connections, $DURATION"
  serve "$store"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/post.lua" \
    "http://127.0.0.1:$PORT/v1/workflows/mode1-zero/runs?wait=true"
  stop
done

echo "== mode 1 with its real latencies (critical path 2650 ms), ?wait=true, 500 connections, $REAL_DURATION"
serve memory
wrk -t"$THREADS" -c500 -d"$REAL_DURATION" --timeout 20s --latency -s "$work/post.lua" \
  "http://127.0.0.1:$PORT/v1/workflows/mode1-manual/runs?wait=true"
stop
