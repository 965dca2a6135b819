#!/usr/bin/env python3
"""Local stand-ins for the services workflows/mode1-real.yaml calls, so it runs without a network.

    python3 examples/services/stub_services.py            # tools :8081, memory :8082, llm :8083
    cargo run --release -p braid-cli -- run workflows/mode1-real.yaml

* tools  (POST /suggest {"query": ...})        -> {"tools": [...]} picked by keywords
* memory (GET /memory/<user>)                   -> {"memory": {"user": ..., "preferences": {...}}}
* llm    (POST /v1/chat/completions, OpenAI)    -> a canned answer quoting the documents in the
  prompt, with token usage; `"stream": true` is answered as server-sent events.

Options: --slow-tools SECONDS delays the tool service (try 3 to see the 2 s timeout fall back),
--fail-memory makes the memory service answer 503. Standard library only.
"""

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one short line per request
        print(f"[{self.server.server_port}] {self.command} {self.path} -> {fmt % args}", flush=True)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def reply(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        port = self.server.server_port
        if port == ARGS.tools_port and self.path == "/suggest":
            query = self.body().get("query", "").lower()
            time.sleep(ARGS.slow_tools)
            tools = [t for k, t in [("key", "secrets_manager"), ("rotat", "audit_log"), ("bill", "invoice_lookup")] if k in query]
            return self.reply(200, {"tools": tools or ["search"]})
        if port == ARGS.llm_port and self.path.rstrip("/").endswith("/chat/completions"):
            return self.chat(self.body())
        self.reply(404, {"error": f"no route {self.path}"})

    def do_GET(self):
        m = re.fullmatch(r"/memory/([^/?]+)", self.path)
        if self.server.server_port == ARGS.memory_port and m:
            if ARGS.fail_memory:
                return self.reply(503, {"error": "memory store is restarting"})
            return self.reply(200, {"memory": {"user": m.group(1), "preferences": {"tone": "concise"}}})
        self.reply(404, {"error": f"no route {self.path}"})

    def chat(self, req):
        prompt = "\n".join(m.get("content", "") for m in req.get("messages", []))
        docs = re.findall(r"^- ([\w.-]+\.md):", prompt, flags=re.M)
        answer = (
            "Rotate each key by creating a new one, deploying it, then revoking the old one"
            + (f" (see {', '.join(docs)})." if docs else ".")
        )
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not req.get("stream"):
            return self.reply(200, {
                "id": "stub-1", "object": "chat.completion", "model": req.get("model", "stub"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": usage,
            })
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for word in re.findall(r"\S+\s*", answer):
            chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.02)
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tools-port", type=int, default=8081)
    p.add_argument("--memory-port", type=int, default=8082)
    p.add_argument("--llm-port", type=int, default=8083)
    p.add_argument("--slow-tools", type=float, default=0.0)
    p.add_argument("--fail-memory", action="store_true")
    ARGS = p.parse_args()
    servers = [ThreadingHTTPServer(("127.0.0.1", port), Handler) for port in (ARGS.tools_port, ARGS.memory_port, ARGS.llm_port)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"tools :{ARGS.tools_port}  memory :{ARGS.memory_port}  llm :{ARGS.llm_port}/v1  (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
