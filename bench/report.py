"""Turns bench/target/results.jsonl into a markdown table (stdout) and bench/results.json.

    python3 report.py RESULTS_JSONL RESULTS_JSON

Standard library only (runs with the system python3).
"""

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ["floor", "dagx", "dagrs", "langgraph"]

# (workload, metric field, label, ideal, lower is better)
ROWS = [
    ("mode1", "overhead_ms", "(a) mode 1: makespan − critical path (2650 ms), ms", "0", True),
    ("straggler", "overhead_ms", "(b) straggler: makespan − critical path (300 ms; supersteps 400), ms", "0", True),
    ("parallel", "overhead_ms", "(b′) 10,000 parallel 10 ms nodes: makespan − critical path (10 ms), ms", "0", True),
    ("random", "overhead_ms", "(b″) random DAG, 2,000 nodes of 1 ms: makespan − critical path, ms", "0", True),
    ("chain", "value", "(c) chain of 10,000 no-ops, µs/node", "—", True),
    ("fan-out", "value", "(c) fan-out 1 → 9,998 → 1, µs/node", "—", True),
    ("layered", "value", "(c) 100 layers × 100 (2 needs each), µs/node", "—", True),
    ("chain@ct", "value", "(c′) chain, current-thread runtime, µs/node", "—", True),
    ("fan-out@ct", "value", "(c′) fan-out, current-thread runtime, µs/node", "—", True),
    ("layered@ct", "value", "(c′) layered, current-thread runtime, µs/node", "—", True),
    ("throughput", "value", "(d) 10,000 concurrent zero-latency mode-1 runs, runs/s", "—", False),
    ("memory", "value", "(e) peak RSS per in-flight run (10,000 in flight), KiB", "≤ 8 (Braid, beyond state)", True),
]


def sh(*cmd):
    try:
        return subprocess.check_output(cmd, stderr=subprocess.DEVNULL, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def lock_version(name):
    try:
        text = open(os.path.join(HERE, "Cargo.lock")).read()
    except OSError:
        return None
    m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return m.group(1) if m else None


def machine():
    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    venv_py = os.path.join(HERE, ".venv", "bin", "python")
    lg = sh(venv_py, "-c", "import importlib.metadata as m; print(m.version('langgraph'), m.version('langchain-core'), m.version('langgraph-checkpoint'))")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
        "rustc": sh("rustc", "--version"),
        "python": sh(venv_py, "--version") or platform.python_version(),
        "versions": {
            "langgraph": lg.split()[0] if lg else None,
            "langchain-core": lg.split()[1] if lg else None,
            "langgraph-checkpoint": lg.split()[2] if lg else None,
            "dagx": lock_version("dagx"),
            "dagrs": lock_version("dagrs"),
            "tokio": lock_version("tokio"),
            "petgraph": lock_version("petgraph"),
        },
    }


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fratio(r):
    if not r:
        return "—"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def main():
    src, dst = sys.argv[1], sys.argv[2]
    results = {}
    for line in open(src):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        results[(r["runner"], r["workload"])] = r

    def get(runner, workload, field):
        r = results.get((runner, workload))
        if r is None or "error" in r:
            return None
        return r.get(field)

    rows = []
    header = "| workload | ideal | Braid | Braid, built-in kinds | " + " | ".join(f"{p} | Braid ÷ {p}" for p in PEERS) + " |"
    out = [header, "|" + "---|" * (4 + 2 * len(PEERS))]
    for workload, field, label, ideal, lower in ROWS:
        braid = get("braid", workload, field)
        builtin = get("braid-builtin", workload, field)
        cells = [label, ideal, fmt(braid), fmt(builtin)]
        row = {"workload": workload, "label": label, "ideal": ideal, "braid": braid, "braid_builtin": builtin, "peers": {}}
        for p in PEERS:
            v = get(p, workload, field)
            if p == "langgraph" and workload.endswith("@ct"):
                v = get(p, workload[:-3], field)  # asyncio is single-threaded: same figure
            # The ratio is on the metric itself (makespan for (a), whose overheads are near zero):
            # above 1 means Braid is worse (slower, fewer runs/s, more memory).
            if field == "overhead_ms":
                bm, pm = get("braid", workload, "value"), get(p, workload, "value")
                ratio = bm / pm if bm and pm else None
            elif braid is None or v is None or v == 0 or braid == 0:
                ratio = None
            else:
                ratio = braid / v if lower else v / braid
            err = results.get((p, workload), {}).get("error")
            cells += ["n/a" if err else fmt(v), fratio(ratio)]
            row["peers"][p] = {"value": v, "ratio": ratio, "error": err}
        out.append("| " + " | ".join(cells) + " |")
        rows.append(row)

    extra = [
        "Not in the (c) figures, per workload: Braid's compile (load the YAML file, schema, checks, "
        "lower: once per workflow), LangGraph's `compile()` (once), and the graph dagx and dagrs "
        "build for every run (ms).",
        "",
        "| workload | Braid compile | Braid compile: peak RSS added, MiB | LangGraph compile | dagx build/run | dagrs build/run | floor petgraph build |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in ("chain", "fan-out", "layered"):
        g = lambda r, f: fmt(get(r, workload, f))
        peak = get("braid", workload, "prepare_peak_rss_kib")
        extra.append(
            f"| {workload} | {g('braid', 'prepare_ms')} | {fmt(peak / 1024) if peak is not None else '—'} | {g('langgraph', 'prepare_ms')} | "
            f"{g('dagx', 'build_ms_per_run')} | {g('dagrs', 'build_ms_per_run')} | {g('floor', 'prepare_ms')} |"
        )
    duels = sorted({w for (_, w) in results if w.startswith("duel-")})
    if duels:
        extra += [
            "",
            "Braid and the floor alternating in one process (`peer-bench duel`): medians, and the median "
            "of the per-round ratios (above 1: Braid behind).",
            "",
            "| workload | rounds | Braid | floor | Braid − critical path | floor − critical path | ratio (median of rounds) | load average at the end |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for w in duels:
            b, f = results.get(("braid", w), {}), results.get(("floor", w), {})
            unit = b.get("unit", "")
            over = lambda r: fmt(r.get("overhead_ms")) if unit == "ms" else "—"
            extra.append(
                f"| {w[5:]} | {b.get('rounds')} | {fmt(b.get('value'))} {unit} | {fmt(f.get('value'))} {unit} | "
                f"{over(b)} | {over(f)} | {fratio(b.get('ratio_median'))} | {b.get('loadavg_end', '')} |"
            )
    errors = [f"- {k[0]} {k[1]}: {v['error']}" for k, v in results.items() if "error" in v]

    facts = machine()
    print(f"Machine: {facts['nproc']} cores, {facts['cpu']}, load {facts['loadavg']}; {facts['rustc']}; {facts['python']}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    print()
    print("\n".join(out))
    print()
    print("Ratios are Braid ÷ peer on cost (time, memory) and peer ÷ Braid on runs/s: above 1 means Braid is behind.")
    print("Rows (a) and (b): the cells are makespan − critical path, the ratios are on the whole makespan.")
    if extra:
        print()
        print("\n".join(extra))
    if errors:
        print()
        print("Did not run:")
        print("\n".join(errors))
    with open(dst, "w") as f:
        json.dump({"machine": facts, "rows": rows, "raw": list(results.values()), "errors": errors}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
