#!/usr/bin/env python3
"""Benchmarks of scale-out (issue 14, docs/scaling.md): `braid serve` replicas sharing runs
through one PostgreSQL database, real processes on loopback.

Phases (each in a schema of its own, dropped at the end):

  throughput  I/O-bound runs (four `mock` nodes of 100 ms, critical path 300 ms) through 1, 2
              and 3 replicas with the same `--max-runs` each: runs/s, from the first run's
              `created_at` to the last one's `ended_at`. The runs are capacity-limited (each
              replica holds at most MAX_RUNS): the machine's CPU use is printed beside each
              figure, to show whether CPU was the limit.
  latency     claim latency: runs submitted at a steady RATE to 3 replicas with spare capacity;
              from the run's `created_at` (the submission) to its first `node_started` event:
              p50, p99, max.
  recovery    a replica holding runs is killed (SIGKILL): the time from the kill to the last of
              its runs restarting on another replica (its last `run_started` event), TRIALS
              times; the lease is TTL.
  heartbeat   one replica holding 10, then 500 runs (a `mock` node of 10 minutes): heartbeats
              per second from `braid_replica_heartbeats_total`, and the rows updated in
              `braid_replicas` and `braid_runs` (pg_stat_user_tables) over WINDOW seconds.

Usage: BRAID_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test scripts/scale-bench.py
[PHASE...]; needs `target/release/braid` (`cargo build --release -p braid-cli`) and `psql`.
Sends requests to 127.0.0.1 only; stops every process it started.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BASE = os.environ.get("BRAID_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
BRAID = os.environ.get("BRAID", "target/release/braid")
MAX_RUNS = int(os.environ.get("MAX_RUNS", "8"))
RUNS_PER_REPLICA = int(os.environ.get("RUNS_PER_REPLICA", "300"))
RATE = float(os.environ.get("RATE", "20"))
LATENCY_RUNS = int(os.environ.get("LATENCY_RUNS", "300"))
TTL = os.environ.get("TTL", "3s")
TRIALS = int(os.environ.get("TRIALS", "5"))
WINDOW = float(os.environ.get("WINDOW", "20"))
PORT0 = int(os.environ.get("PORT", "18400"))

IO = """version: 1
name: io
state:
  log: { reducer: append, default: [] }
nodes:
  fetch: { kind: mock, writes: [log], with: { latency: 100ms, output: { log: [fetch] } } }
  left:  { kind: mock, needs: [fetch], writes: [log], with: { latency: 100ms, output: { log: [left] } } }
  right: { kind: mock, needs: [fetch], writes: [log], with: { latency: 100ms, output: { log: [right] } } }
  join:  { kind: mock, needs: [left, right], writes: [log], with: { latency: 100ms, output: { log: [join] } } }
"""

LONG = "version: 1\nname: long\nstate:\n  log: { reducer: append, default: [] }\nnodes:\n" + "".join(
    f"  n{i}: {{ kind: mock, {'needs: [n%d], ' % (i - 1) if i else ''}writes: [log], "
    f"with: {{ latency: 500ms, output: {{ log: [n{i}] }} }} }}\n"
    for i in range(20)
)

HOLD = """version: 1
name: hold
state:
  out: { reducer: replace, default: none }
nodes:
  hold: { kind: mock, writes: [out], with: { latency: 600s, output: { out: held } } }
"""


def psql(url, sql):
    out = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def proc_cpu(pid):
    """CPU seconds a process used (user + system), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def cpu_times():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts), idle


class Cluster:
    """A schema, a directory of workflows, and the replicas started on them."""

    def __init__(self, phase):
        self.schema = f"braid_bench_{phase}_{os.getpid()}"
        psql(BASE, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE; CREATE SCHEMA {self.schema}")
        sep = "&" if "?" in BASE else "?"
        self.url = f"{BASE}{sep}options=-c%20search_path%3D{self.schema}&application_name={self.schema}"
        self.dir = tempfile.mkdtemp(prefix=f"braid-bench-{phase}-")
        os.makedirs(f"{self.dir}/wf")
        for name, text in (("io", IO), ("long", LONG), ("hold", HOLD)):
            with open(f"{self.dir}/wf/{name}.yaml", "w") as f:
                f.write(text)
        self.procs = {}
        self.ports = {}

    def q(self, sql):
        return psql(self.url, sql)

    def n(self, sql):
        return int(self.q(sql)[0][0])

    def serve(self, rid, max_runs, port):
        log = open(f"{self.dir}/{rid}.log", "w")
        p = subprocess.Popen(
            [BRAID, "serve", f"{self.dir}/wf", "--store", self.url, "--listen", f"127.0.0.1:{port}",
             "--max-runs", str(max_runs), "--lease-ttl", TTL, "--replica-id", rid, "--poll", "1s",
             "--drain-timeout", "1s"],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "warn"})
        self.procs[rid], self.ports[rid] = p, port
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline or p.poll() is not None:
                sys.exit(f"replica {rid} did not start: {open(log.name).read()}")
            time.sleep(0.1)

    def cpu(self):
        """CPU seconds used so far by the replicas, and by their database sessions."""
        replicas = sum(proc_cpu(p.pid) for p in self.procs.values())
        pids = [int(r[0]) for r in psql(BASE, "SELECT pid FROM pg_stat_activity "
                                               f"WHERE application_name = '{self.schema}'")]
        return replicas, sum(proc_cpu(pid) for pid in pids)

    def kill(self, rid):
        p = self.procs.pop(rid)
        p.kill()
        p.wait()

    def close(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        self.procs.clear()
        psql(BASE, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, rid, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports[rid]}{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()

    def submit(self, rid, workflow):
        status, body = self.call(rid, "POST", f"/v1/workflows/{workflow}/runs", {})
        assert status == 201, body
        return json.loads(body)["run_id"]

    def submit_many(self, rids, workflow, n, threads=8):
        ids, lock = [], threading.Lock()

        def work(k):
            for i in range(k, n, threads):
                rid = rids[i % len(rids)]
                run = self.submit(rid, workflow)
                with lock:
                    ids.append(run)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return ids

    def events(self, rid, run):
        _, body = self.call(rid, "GET", f"/v1/runs/{run}/events")
        out = []
        for block in body.decode().split("\n\n"):
            for line in block.splitlines():
                if line.startswith("data:"):
                    e = json.loads(line[5:])
                    if "seq" in e:
                        out.append(e)
        return out

    def metric(self, rid, name):
        _, body = self.call(rid, "GET", "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name)] in "{ ":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_ended(self, limit=600):
        deadline = time.time() + limit
        while self.n("SELECT count(*) FROM braid_runs WHERE state = 0") > 0:
            if time.time() > deadline:
                sys.exit("runs did not end in time")
            time.sleep(0.2)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def throughput():
    print(f"== throughput: I/O-bound runs (4 mock nodes of 100 ms, critical path 300 ms), "
          f"--max-runs {MAX_RUNS} per replica, {RUNS_PER_REPLICA} runs per replica")
    rates = {}
    for replicas in (1, 2, 3):
        c = Cluster(f"tp{replicas}")
        try:
            rids = [f"r{i}" for i in range(replicas)]
            for i, rid in enumerate(rids):
                c.serve(rid, MAX_RUNS, PORT0 + i)
            n = RUNS_PER_REPLICA * replicas
            t0, idle0 = cpu_times()
            r0, b0 = c.cpu()
            w0 = time.time()
            c.submit_many(rids, "io", n)
            c.wait_ended()
            r1, b1 = c.cpu()
            wall = time.time() - w0
            t1, idle1 = cpu_times()
            ok = c.n("SELECT count(*) FROM braid_runs WHERE state = 2")
            first, last = (int(x) for x in c.q(
                "SELECT min(created_at), max(ended_at) FROM braid_runs")[0])
            rate = n / ((last - first) / 1e6)
            busy = 100 * (1 - (idle1 - idle0) / (t1 - t0))
            spread = c.q("SELECT owner, count(*) FROM braid_runs GROUP BY 1 ORDER BY 1")
            rates[replicas] = rate
            print(f"{replicas} replica(s): {n} runs ({ok} succeeded) in {(last - first) / 1e6:.2f} s: "
                  f"{rate:.1f} runs/s (ideal {replicas * MAX_RUNS / 0.3:.0f}); CPU: replicas "
                  f"{(r1 - r0) / wall:.2f} cores, their PostgreSQL sessions {(b1 - b0) / wall:.2f} cores, "
                  f"{1000 * (r1 - r0 + b1 - b0) / n:.1f} ms per run; the machine busy {busy:.0f} % of "
                  f"{os.cpu_count()} cores; runs per replica {dict((o or '-', int(k)) for o, k in spread)}")
        finally:
            c.close()
    print(f"three vs one: {rates[3] / rates[1]:.2f}x; two vs one: {rates[2] / rates[1]:.2f}x")


def latency():
    print(f"== claim latency: {LATENCY_RUNS} runs submitted at {RATE}/s round-robin to 3 replicas "
          f"(--max-runs 50 each, spare capacity): created_at -> first node_started")
    c = Cluster("lat")
    try:
        rids = ["a", "b", "c"]
        for i, rid in enumerate(rids):
            c.serve(rid, 50, PORT0 + 10 + i)
        runs = []
        t = time.time()
        for i in range(LATENCY_RUNS):
            runs.append(c.submit(rids[i % 3], "io"))
            t += 1 / RATE
            time.sleep(max(0, t - time.time()))
        c.wait_ended()
        created = dict(c.q("SELECT id, created_at FROM braid_runs"))
        lat = []
        for run in runs:
            first = next(e for e in c.events("a", run) if e["kind"] == "node_started")
            lat.append((first["at"] - int(created[run])) / 1000)
        print(f"claim latency (ms): p50 {pct(lat, 50):.1f}, p90 {pct(lat, 90):.1f}, "
              f"p99 {pct(lat, 99):.1f}, max {max(lat):.1f} (n={len(lat)})")
    finally:
        c.close()


def recovery():
    print(f"== recovery: 3 replicas (--max-runs 20, lease {TTL}), 30 runs of 10 s held; one "
          f"replica killed; kill -> the last of its runs restarted elsewhere, {TRIALS} trials")
    times = []
    for trial in range(TRIALS):
        c = Cluster(f"rec{trial}")
        try:
            rids = ["a", "b", "c"]
            for i, rid in enumerate(rids):
                c.serve(rid, 20, PORT0 + 20 + i)
            c.submit_many(rids, "long", 30)
            deadline = time.time() + 60
            while c.n("SELECT count(*) FROM braid_runs WHERE owner = 'b' AND state = 0") == 0:
                assert time.time() < deadline
                time.sleep(0.1)
            time.sleep(1.0)
            orphans = [r[0] for r in c.q("SELECT id FROM braid_runs WHERE owner = 'b' AND state = 0")]
            c.kill("b")
            killed = time.time() * 1e6
            c.wait_ended()
            restarts = []
            for run in orphans:
                starts = [e["at"] for e in c.events("a", run) if e["kind"] == "run_started"]
                restarts.append(max(starts))
            took = (max(restarts) - killed) / 1e6
            first = (min(restarts) - killed) / 1e6
            times.append(took)
            print(f"trial {trial + 1}: {len(orphans)} runs of the killed replica; first restarted "
                  f"after {first:.2f} s, last after {took:.2f} s")
        finally:
            c.close()
    print(f"recovery (s): median {statistics.median(times):.2f}, max {max(times):.2f} (lease {TTL})")


def heartbeat():
    print(f"== heartbeats: one replica (lease {TTL}) holding N runs, over {WINDOW:.0f} s")
    for held in (10, 500):
        c = Cluster(f"hb{held}")
        try:
            c.serve("a", held, PORT0 + 30)
            c.submit_many(["a"], "hold", held)
            deadline = time.time() + 120
            while c.n("SELECT count(*) FROM braid_runs WHERE owner = 'a' AND state = 0") < held:
                assert time.time() < deadline, "the runs were not all claimed"
                time.sleep(0.2)
            time.sleep(3)

            def sample():
                rows = dict((r[0], (int(r[1]), int(r[2]))) for r in c.q(
                    "SELECT relname, n_tup_upd, n_tup_ins FROM pg_stat_user_tables "
                    f"WHERE schemaname = '{c.schema}' AND relname IN ('braid_replicas', 'braid_runs')"))
                return time.time(), c.metric("a", "braid_replica_heartbeats_total"), rows

            t0, h0, r0 = sample()
            time.sleep(WINDOW)
            t1, h1, r1 = sample()
            dt = t1 - t0
            upd = {k: (r1[k][0] - r0[k][0]) / dt for k in r1}
            print(f"{held} runs held: {(h1 - h0) / dt:.2f} heartbeats/s (metric); rows updated/s: "
                  f"braid_replicas {upd.get('braid_replicas', 0):.2f}, braid_runs {upd.get('braid_runs', 0):.2f}")
        finally:
            c.close()


def main():
    if not os.path.exists(BRAID):
        sys.exit(f"{BRAID} is missing: cargo build --release -p braid-cli")
    phases = sys.argv[1:] or ["throughput", "latency", "recovery", "heartbeat"]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    for phase in phases:
        {"throughput": throughput, "latency": latency, "recovery": recovery,
         "heartbeat": heartbeat}[phase]()
        print(f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
