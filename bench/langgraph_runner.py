"""LangGraph runner: the same workloads as the Rust runners, through LangGraph's graph API.

    langgraph_runner.py <mode1|straggler|chain|fan-out|layered|throughput|memory> --bin PEER_BENCH [--quick]

The workload comes from `peer-bench json <workload>` (the Rust definitions, so every runner runs
the same graph). A `StateGraph` whose state keys carry reducers (`Annotated[list, operator.add]`
for append, `operator.add` for sum, a deep merge for merge, last-value for replace); roots wired
from START (parallel edges), a node with several needs wired with a waiting edge
(`add_edge([a, b], node)`), async nodes whose latency is an `asyncio.sleep`. Prints one JSON line
per measurement, like the Rust binary.
"""

import asyncio
import json
import operator
import statistics
import subprocess
import sys
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

RUNS = 10_000
in_flight = 0


def deep_merge(a: Any, b: Any) -> Any:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if k in out else v
    return out


REDUCERS = {
    "replace": None,
    "append": operator.add,
    "sum": operator.add,
    "merge": deep_merge,
}
TYPES = {"replace": Any, "append": list, "sum": float, "merge": dict}


def make_node(n: dict):
    latency = n["latency_ms"] / 1000.0
    out = n["output"]
    probe = n["probe"]

    async def node(state: dict) -> dict:
        global in_flight
        if probe:
            in_flight += 1
            await asyncio.sleep(3600)
        elif latency:
            await asyncio.sleep(latency)
        return out

    return node


def build(w: dict):
    fields = {}
    for k in w["keys"]:
        r = REDUCERS[k["reducer"]]
        fields[k["name"]] = Annotated[TYPES[k["reducer"]], r] if r else Any
    if not fields:
        fields["unused"] = int
    State = TypedDict("State", fields, total=False)  # type: ignore[misc]
    g = StateGraph(State)
    nodes = w["nodes"]
    has_dependents = [False] * len(nodes)
    for n in nodes:
        g.add_node(n["name"], make_node(n))
    for n in nodes:
        needs = [nodes[i]["name"] for i in n["needs"]]
        for i in n["needs"]:
            has_dependents[i] = True
        if not needs:
            g.add_edge(START, n["name"])
        elif len(needs) == 1:
            g.add_edge(needs[0], n["name"])
        else:
            g.add_edge(needs, n["name"])
    for n, dep in zip(nodes, has_dependents):
        if not dep:
            g.add_edge(n["name"], END)
    compiled = g.compile()
    initial = {k["name"]: k["default"] for k in w["keys"] if k["default"] is not None}
    config = {"recursion_limit": len(nodes) + 10}
    return compiled, initial, config


def load(bin_path: str, name: str) -> dict:
    return json.loads(subprocess.check_output([bin_path, "json", name]))


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def emit(workload: str, metric: str, value: float, unit: str, **extra):
    line = {"runner": "langgraph", "workload": workload, "metric": metric, "value": value, "unit": unit}
    line.update(extra)
    print(json.dumps(line), flush=True)


def critical_path_ms(w: dict) -> int:
    finish = []
    for n in w["nodes"]:
        finish.append(max((finish[i] for i in n["needs"]), default=0) + n["latency_ms"])
    return max(finish)


async def makespan(w: dict, label: str, quick: bool):
    graph, initial, config = build(w)
    short = critical_path_ms(w) < 1000
    # One warm-up run, not counted; then as many runs as the Rust runners make.
    await graph.ainvoke(dict(initial), config)
    samples = []
    for _ in range((3 if quick else 9) if short else (2 if quick else 4)):
        t = time.perf_counter()
        await graph.ainvoke(dict(initial), config)
        samples.append((time.perf_counter() - t) * 1000)
    m = statistics.median(samples)
    ideal = critical_path_ms(w)
    emit(label, "makespan_ms", m, "ms", ideal=ideal, overhead_ms=m - ideal, samples=samples)


async def per_node(w: dict, quick: bool):
    t = time.perf_counter()
    graph, initial, config = build(w)
    prepare_ms = (time.perf_counter() - t) * 1000
    n = len(w["nodes"])
    t = time.perf_counter()
    await graph.ainvoke(dict(initial), config)  # warm-up, not counted
    warm = time.perf_counter() - t
    # Keep the whole suite within its budget: fewer iterations when one run is slow, and when
    # one run takes over 10 s (the chain: LangGraph's supersteps cost O(nodes) each), the
    # warm-up run is the only sample.
    iters = 0 if warm > 10 else max(1, min(3 if quick else 9, int((10 if quick else 30) / max(warm, 1e-3))))
    samples = [] if iters else [warm * 1e6 / n]
    for _ in range(iters):
        t = time.perf_counter()
        await graph.ainvoke(dict(initial), config)
        samples.append((time.perf_counter() - t) * 1e6 / n)
    emit(w["name"], "us_per_node", statistics.median(samples), "µs/node", nodes=n, executed_nodes=n,
         prepare_ms=prepare_ms, samples=samples, warmup_s=warm)


async def throughput(w: dict, quick: bool):
    graph, initial, config = build(w)
    await asyncio.gather(*(graph.ainvoke(dict(initial), config) for _ in range(200)))
    # For context: the same runs one at a time (no concurrency at all).
    t = time.perf_counter()
    for _ in range(300):
        await graph.ainvoke(dict(initial), config)
    sequential = 300 / (time.perf_counter() - t)
    # One burst of 10,000 takes about two minutes here: one repetition (2,000 runs with --quick).
    runs = 2_000 if quick else RUNS
    t = time.perf_counter()
    await asyncio.gather(*(graph.ainvoke(dict(initial), config) for _ in range(runs)))
    rps = runs / (time.perf_counter() - t)
    emit("throughput", "runs_per_s", rps, "runs/s", runs=runs, samples=[rps], sequential_runs_per_s=sequential)


async def memory(w_warm: dict, w: dict):
    graph, initial, config = build(w_warm)
    for _ in range(20):
        await graph.ainvoke(dict(initial), config)
    graph, initial, config = build(w)
    await asyncio.sleep(0.1)
    base_rss, base_hwm = status_kib("VmRSS:"), status_kib("VmHWM:")
    t = time.perf_counter()
    tasks = [asyncio.ensure_future(graph.ainvoke(dict(initial), config)) for _ in range(RUNS)]
    while in_flight < RUNS:
        if time.perf_counter() - t > 300:
            raise SystemExit("runs never all reached the blocking node")
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    rss, hwm = status_kib("VmRSS:"), status_kib("VmHWM:")
    emit("memory", "kib_per_run", (hwm - base_rss) / RUNS, "KiB/run", runs=RUNS,
         baseline_rss_kib=base_rss, baseline_hwm_kib=base_hwm, inflight_rss_kib=rss, inflight_hwm_kib=hwm,
         kib_per_run_rss=(rss - base_rss) / RUNS, seconds_to_all_in_flight=time.perf_counter() - t)
    sys.stdout.flush()
    import os
    os._exit(0)  # the blocked runs would sleep for an hour
    del tasks


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    bin_path = args[args.index("--bin") + 1]
    workload = args[0]
    if workload in ("mode1", "straggler", "parallel", "random"):
        coro = makespan(load(bin_path, workload), workload, quick)
    elif workload in ("chain@ct", "fan-out@ct", "layered@ct"):
        return  # asyncio has one thread: the plain rows already are LangGraph's figures
    elif workload in ("chain", "fan-out", "layered"):
        coro = per_node(load(bin_path, workload), quick)
    elif workload == "throughput":
        coro = throughput(load(bin_path, "mode1-zero"), quick)
    elif workload == "memory":
        coro = memory(load(bin_path, "mode1-zero"), load(bin_path, "mode1-blocked"))
    else:
        raise SystemExit(f"unknown workload {workload}")
    asyncio.run(coro)


if __name__ == "__main__":
    main()
