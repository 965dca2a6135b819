#!/usr/bin/env bash
# Renders `braid run --timeline` output in a real headless browser and checks what a person sees:
# the page loads, has one row per node and one bar per attempt, and the critical path is marked.
# Leaves a screenshot at target/timeline.png. Installs Debian's chromium when it is missing.
#
#   scripts/check-timeline.sh [WORKFLOW]      (default: workflows/mode3-autonomous.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
workflow="${1:-workflows/mode3-autonomous.yaml}"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build -q -p braid-cli
mkdir -p target
./target/debug/braid run "$workflow" --quiet --timeline target/timeline.html --report target/timeline-report.json >/dev/null
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)")
chromium "${flags[@]}" --dump-dom "file://$PWD/target/timeline.html" > target/timeline.dom.html 2>/dev/null
chromium "${flags[@]}" --window-size=1200,700 --screenshot="$PWD/target/timeline.png" "file://$PWD/target/timeline.html" 2>/dev/null
python3 - <<'PY'
import json, re
dom = open("target/timeline.dom.html").read()
report = json.load(open("target/timeline-report.json"))
rows = re.findall(r'class="track[^"]*" data-node="([^"]+)"', dom)
assert rows == [n["name"] for n in report["nodes"]], (rows, report["nodes"])
attempts = len(re.findall(r'data-attempt="', dom))
expected = sum(n["attempts"] for n in report["nodes"] if n["status"] != "skipped")
assert attempts == expected, (attempts, expected)
crit = re.findall(r'class="label crit"[^>]*>([^<]+)<', dom)
assert crit == [n for n in [x["name"] for x in report["nodes"]] if n in report["critical_path"]], crit
print(f"ok: {len(rows)} rows, {attempts} attempt bars, critical path {' -> '.join(report['critical_path'])}; screenshot: target/timeline.png")
PY
