#!/usr/bin/env bash
# A/B load test of two `braid serve` binaries, alternating, on loopback with wrk (Debian:
# `apt-get install wrk`): zero-latency mode 1 with `?wait=true`, 64 connections, DURATION each,
# ROUNDS rounds, so that the machine's other work falls on both alike.
#
#   scripts/serve-ab.sh BASE_BINARY NEW_BINARY [memory|sqlite] [ROUNDS]
#
# Build the base from another work tree, e.g. `git worktree add /tmp/base c657e26 && (cd
# /tmp/base && cargo build --release -p braid-cli)`. Figures: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 new=$2 store=${3:-memory} rounds=${4:-3}
DURATION=${DURATION:-10s}
PORT=${PORT:-18333}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/wf"
sed '/latency:/d; s/^name: mode1-manual$/name: mode1-zero/' workflows/mode1-manual.yaml >"$work/wf/mode1-zero.yaml"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"inputs": {"query": "how do I rotate keys?"}}'
wrk.headers["Content-Type"] = "application/json"
LUA
for r in $(seq 1 "$rounds"); do
  for name in base new; do
    bin=$new; [ "$name" = base ] && bin=$base
    rm -f "$work"/serve.db*
    s=$store; [ "$s" = sqlite ] && s="sqlite:$work/serve.db"
    "$bin" serve "$work/wf" --store "$s" --listen "127.0.0.1:$PORT" --max-runs 2048 >"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    out=$(wrk -t2 -c64 -d"$DURATION" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/workflows/mode1-zero/runs?wait=true")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$store round $r $name: $rps requests/s, p50 $p50, p99 $p99, load $(cut -d' ' -f1 /proc/loadavg)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
