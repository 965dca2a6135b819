#!/usr/bin/env bash
# Braid side by side with LangGraph, dagx, dagrs and a hand-written floor.
#
#   bench/run.sh [--quick] [--runners braid,braid-builtin,floor,dagx,dagrs,langgraph] [--workloads mode1,...] [--duels]
#
# Creates bench/.venv (LangGraph from PyPI, pinned in requirements.txt), builds the Rust runners
# with --release into bench/target, runs every (runner, workload) pair in its own process, prints
# a markdown table and writes bench/results.json. With --runners, only those runners are rerun;
# the other runners' last figures are kept (bench/target/results.jsonl).
set -euo pipefail
cd "$(dirname "$0")"

QUICK=""
RUNNERS="braid,braid-builtin,floor,dagx,dagrs,langgraph"
WORKLOADS="mode1,straggler,parallel,random,chain,fan-out,layered,chain@ct,fan-out@ct,layered@ct,throughput,memory"
# Braid against the floor, alternating in one process (`peer-bench duel`), with --duels.
DUELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK="--quick" ;;
    --runners) RUNNERS="$2"; shift ;;
    --workloads) WORKLOADS="$2"; shift ;;
    --duels) DUELS="parallel,random,throughput,straggler" ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# PEER_BENCH_TARGET: build somewhere else (such as the main workspace's target directory, to reuse
# the crates it has built); the results and the generated workloads stay under bench/target.
export CARGO_TARGET_DIR="${PEER_BENCH_TARGET:-$PWD/target}"
mkdir -p target
if [[ ",$RUNNERS," == *",langgraph,"* ]]; then
  if [ ! -x .venv/bin/python ]; then
    echo "creating bench/.venv" >&2
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt >&2
fi
# Transparent huge pages off for the Rust runners (all under mimalloc), as the `braid` binary
# turns them off for itself: mimalloc `madvise`s its arenas into 2 MiB pages, which makes resident
# memory jump in 2 MiB steps with no allocation behind it (docs/performance.md).
export MIMALLOC_ALLOW_THP=0
echo "building the Rust runners (--release)" >&2
cargo build --release --quiet >&2
BIN="$CARGO_TARGET_DIR/release/peer-bench"

OUT=target/results.jsonl
touch "$OUT"
# Drop the previous figures of the runners and workloads about to run.
python3 - "$OUT" "$RUNNERS" "$WORKLOADS" <<'PY'
import json, sys
path, runners, workloads = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
keep = []
for line in open(path):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if not (r.get("runner") in runners and r.get("workload") in workloads):
        keep.append(line if line.endswith("\n") else line + "\n")
open(path, "w").writelines(keep)
PY

IFS=, read -ra WS <<< "$WORKLOADS"
IFS=, read -ra RS <<< "$RUNNERS"
for w in "${WS[@]}"; do
  for r in "${RS[@]}"; do
    if [ "$r" = langgraph ] && [[ "$w" == *@ct ]]; then continue; fi
    echo "  $r $w" >&2
    if [ "$r" = langgraph ]; then
      cmd=(.venv/bin/python langgraph_runner.py "$w" --bin "$BIN" $QUICK)
    else
      cmd=("$BIN" "$r" "$w" $QUICK)
    fi
    if ! line=$(timeout 300 "${cmd[@]}" 2> "target/$r-$w.err"); then
      reason=$(tail -c 300 "target/$r-$w.err" | tr '\n"\\' "  /")
      line="{\"runner\":\"$r\",\"workload\":\"$w\",\"error\":\"exit or timeout: $reason\"}"
    fi
    printf '%s\n' "$line" >> "$OUT"
  done
done

if [ -n "$DUELS" ]; then
  IFS=, read -ra DS <<< "$DUELS"
  for w in "${DS[@]}"; do
    echo "  duel $w" >&2
    grep -v "\"workload\": *\"duel-$w\"" "$OUT" > "$OUT.tmp" || true
    mv "$OUT.tmp" "$OUT"
    if ! timeout 600 "$BIN" duel "$w" $QUICK >> "$OUT" 2> "target/duel-$w.err"; then
      echo "duel $w failed: $(tail -c 300 "target/duel-$w.err")" >&2
    fi
  done
fi

python3 report.py "$OUT" results.json
