#!/usr/bin/env python3
"""A small BM25 retriever over a folder of markdown files, written for Braid's `exec` kind.

Protocol (see docs/nodes/exec.md):

* standard input: one JSON document, {"inputs": {"query": "...", ...}, "state": {...},
  "node": "rag", "attempt": 1}; the query is `inputs.query`.
* standard output: one JSON object of state updates,
  {"rag_results": [{"doc": "api-key-rotation.md", "title": "...", "score": 3.21, "snippet": "..."}]}
* failure: a message on standard error and a non-zero exit status (Braid quotes the stderr tail).

Usage in a workflow:

    rag:
      kind: exec
      timeout: 2s
      writes: [rag_results]
      with:
        command: [python3, examples/retrieval/retrieve.py, --k, "{{ inputs.k }}"]

Options: --docs DIR (default: the `docs` folder beside this script), --k N (default 3),
--min-score S (default 0: drop documents that match no query term). Standard library only.
"""

import argparse
import json
import math
import os
import re
import sys

TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it its my of on or our should "
    "the their this to was we what when where which who why will with you your".split()
)


def tokens(text):
    """Lowercase word tokens without stopwords, with a light plural/suffix stemming."""
    out = []
    for t in TOKEN.findall(text.lower()):
        if t in STOPWORDS:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(t) > len(suffix) + 2 and t.endswith(suffix):
                t = t[: -len(suffix)]
                break
        out.append(t)
    return out


def load(folder):
    docs = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".md"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            text = f.read()
        lines = [l.strip() for l in text.splitlines() if l.strip()]
        title = lines[0].lstrip("# ").strip() if lines else name
        body = " ".join(l for l in lines[1:])
        docs.append({"doc": name, "title": title, "text": text, "body": body, "tokens": tokens(text)})
    return docs


def bm25(query_terms, docs, k1=1.5, b=0.75):
    """Scores every document against the query with Okapi BM25."""
    n = len(docs)
    avg = sum(len(d["tokens"]) for d in docs) / max(n, 1)
    df = {}
    for d in docs:
        for t in set(d["tokens"]):
            df[t] = df.get(t, 0) + 1
    scores = []
    for d in docs:
        tf = {}
        for t in d["tokens"]:
            tf[t] = tf.get(t, 0) + 1
        score = 0.0
        for q in query_terms:
            if q not in tf:
                continue
            idf = math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5))
            f = tf[q]
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d["tokens"]) / avg))
        scores.append(score)
    return scores


def snippet(body, query_terms, width=160):
    """The sentence that shares the most terms with the query, cut to `width` characters."""
    sentences = re.split(r"(?<=[.!?])\s+", body)
    best = max(sentences, key=lambda s: len(set(tokens(s)) & set(query_terms)), default="")
    return best if len(best) <= width else best[: width - 1] + "…"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=os.path.join(here, "docs"))
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--min-score", type=float, default=0.0)
    args = parser.parse_args()

    try:
        request = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        print(f"retrieve.py: standard input is not JSON: {e}", file=sys.stderr)
        return 2
    query = (request.get("inputs") or {}).get("query")
    if not isinstance(query, str) or not query.strip():
        print("retrieve.py: `inputs.query` must be a non-empty string", file=sys.stderr)
        return 2
    if not os.path.isdir(args.docs):
        print(f"retrieve.py: no document folder at {args.docs}", file=sys.stderr)
        return 2

    docs = load(args.docs)
    terms = tokens(query)
    scores = bm25(terms, docs)
    ranked = sorted(zip(scores, docs), key=lambda p: (-p[0], p[1]["doc"]))
    results = [
        {"doc": d["doc"], "title": d["title"], "score": round(s, 4), "snippet": snippet(d["body"], terms)}
        for s, d in ranked[: max(args.k, 0)]
        if s > args.min_score
    ]
    json.dump({"rag_results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
