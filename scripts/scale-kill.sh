#!/usr/bin/env bash
# Runs the scale-out kill test N times (default 50): three replicas (`braid serve`, `braid serve`,
# `braid worker`) share BRAID_SCALE_RUNS runs (default 300) through PostgreSQL; one is killed with
# SIGKILL mid-load. Each trial must end every run `succeeded` exactly once with the state a
# single-process run gives, and run every node that had settled under the killed replica exactly
# once (each node counts its executions in a file). The suite runs the same test once, with 120
# runs. Each trial's log is kept; the summary gives the passes and the kill-to-last-restart times.
#
#   BRAID_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test scripts/scale-kill.sh
#   BRAID_SCALE_RUNS=500 scripts/scale-kill.sh 10
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BRAID_TEST_POSTGRES_URL:?set BRAID_TEST_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test}"
trials="${1:-50}"
export BRAID_SCALE_RUNS="${BRAID_SCALE_RUNS:-300}"
test=scale::a_replica_killed_mid_load_loses_no_run_and_no_settled_node_runs_again
cargo test --quiet -p braid-cli --test e2e --no-run
logs=$(mktemp -d -t braid-scale-kill.XXXXXX)
pass=0
fail=0
for i in $(seq 1 "$trials"); do
  start=$(date +%s)
  if cargo test --quiet -p braid-cli --test e2e -- --exact --nocapture "$test" >"$logs/$i.log" 2>&1; then
    pass=$((pass + 1))
    echo "trial $i passed in $(($(date +%s) - start)) s: $(grep -h '^kill:' "$logs/$i.log")"
  else
    fail=$((fail + 1))
    echo "trial $i FAILED (log: $logs/$i.log):"
    grep -h -A3 'panicked' "$logs/$i.log" | head -8
  fi
done
echo "$pass of $trials trials passed ($BRAID_SCALE_RUNS runs each); logs in $logs"
restarts=$(grep -ho 'restarted [0-9.]* s after the kill' "$logs"/*.log | awk '{print $2}' | sort -n)
if [ -n "$restarts" ]; then
  echo "kill to the last resumed run's restart (s): min $(echo "$restarts" | head -1), median $(echo "$restarts" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'), max $(echo "$restarts" | tail -1)"
fi
[ "$fail" -eq 0 ]
