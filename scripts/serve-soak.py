#!/usr/bin/env python3
"""Soak test of `braid serve` on loopback: a steady rate of `?wait=true` runs for SOAK seconds
while a workflow file is edited EDITS times (every INVALID_EVERY-th edit invalid), checking that

* no request fails (every answer is 200 with a finished run),
* no run ran on a wrong version: each run's output names a version that had been written valid,
  never an older one than the version the API reported serving before the request was sent,
* resident memory stays flat: the server's RSS at the end within 10 % of its RSS after warm-up
  (on the default SQLite store; the memory store keeps every run, so it grows by design).

Usage: scripts/serve-soak.py [SOAK_SECONDS] (default 600); needs `target/release/braid`
(`cargo build --release -p braid-cli`). Sends requests to 127.0.0.1 only; stops by itself.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SOAK = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
RATE = float(os.environ.get("RATE", "100"))  # requests per second, steady
EDITS = int(os.environ.get("EDITS", "100"))
PORT = int(os.environ.get("PORT", "18131"))
WORKERS = 16
SAMPLE = float(os.environ.get("SAMPLE", "60"))  # seconds between two RSS samples printed
# SQLite by default: the memory store keeps every run in the process (about 8 KiB each), so its
# resident memory grows with the runs by design; `STORE=memory` measures that.
STORE = os.environ.get("STORE", "sqlite:{dir}/soak.db")
BASE = f"http://127.0.0.1:{PORT}"


def workflow(version):
    return (
        "version: 1\nname: soak\nstate:\n  out: { reducer: replace }\n  more: { reducer: replace }\n"
        "nodes:\n  a:\n    kind: mock\n    writes: [out]\n"
        f"    with: {{ latency: 5ms, output: {{ out: {version} }} }}\n"
        "  b:\n    kind: mock\n    needs: [a]\n    writes: [more]\n"
        "    with: { latency: 5ms, output: { more: 1 } }\n"
    )


INVALID = "version: 1\nname: soak\nnodes:\n  a: { kind: mock, needs: [ghost] }\n"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    work = tempfile.mkdtemp()
    wf = os.path.join(work, "wf")
    os.mkdir(wf)
    path = os.path.join(wf, "soak.yaml")
    with open(path, "w") as f:
        f.write(workflow(0))
    server = subprocess.Popen(
        ["target/release/braid", "serve", wf, "--store", STORE.replace("{dir}", work),
         "--listen", f"127.0.0.1:{PORT}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
    try:
        for _ in range(100):
            try:
                call("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        lock = threading.Lock()
        serving = {"version": 0}
        stats = {"ok": 0, "failed": 0, "wrong": 0, "versions": set()}
        stop = time.monotonic() + SOAK
        next_slot = [time.monotonic()]

        def worker():
            while True:
                with lock:
                    slot = next_slot[0]
                    next_slot[0] += 1.0 / RATE
                    floor = serving["version"]
                now = time.monotonic()
                if slot > stop:
                    return
                if slot > now:
                    time.sleep(slot - now)
                try:
                    status, body = call("POST", "/v1/workflows/soak/runs?wait=true", {})
                    out = body.get("state", {}).get("out")
                    with lock:
                        if status != 200 or body.get("status") != "succeeded":
                            stats["failed"] += 1
                        elif not isinstance(out, int) or out < floor:
                            stats["wrong"] += 1
                        else:
                            stats["ok"] += 1
                            stats["versions"].add(out)
                except Exception:  # noqa: BLE001 - any failure counts
                    with lock:
                        stats["failed"] += 1

        def sampler():
            # The curve, not only its two ends: a cache filling to its cap levels off, a leak
            # does not.
            start = time.monotonic()
            while time.monotonic() < stop:
                print(f"  t={time.monotonic() - start:4.0f}s  RSS {rss_kib(server.pid)} KiB  "
                      f"runs {stats['ok']}", flush=True)
                time.sleep(SAMPLE)

        threading.Thread(target=sampler, daemon=True).start()
        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        time.sleep(min(10.0, SOAK / 6))
        warm_rss = rss_kib(server.pid)
        edit_gap = (SOAK - min(10.0, SOAK / 6)) / (EDITS + 1)
        version, invalid = 0, 0
        for i in range(1, EDITS + 1):
            time.sleep(edit_gap)
            if i % 10 in (3, 6, 9):  # 30 of 100
                with open(path, "w") as f:
                    f.write(INVALID)
                invalid += 1
                continue
            version += 1
            with open(path, "w") as f:
                f.write(workflow(version))
            # Once the API reports it, every later request must run this version or a newer one.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                _, w = call("GET", "/v1/workflows/soak")
                _, probe = call("POST", "/v1/workflows/soak/runs?wait=true", {})
                if w.get("valid") and probe.get("state", {}).get("out") == version:
                    with lock:
                        serving["version"] = version
                    break
                time.sleep(0.05)
        for t in threads:
            t.join()
        end_rss = rss_kib(server.pid)
        growth = (end_rss - warm_rss) / warm_rss * 100 if warm_rss else 0.0
        print(f"soak {SOAK:.0f}s at {RATE:.0f} req/s: {stats['ok']} ok, {stats['failed']} failed, "
              f"{stats['wrong']} on a wrong version; {version} valid and {invalid} invalid edits; "
              f"versions seen: {len(stats['versions'])}; RSS {warm_rss} KiB after warm-up, "
              f"{end_rss} KiB at the end ({growth:+.1f} %)")
        ok = stats["failed"] == 0 and stats["wrong"] == 0 and abs(growth) <= 10.0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
