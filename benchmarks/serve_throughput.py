"""`assay serve` under concurrent clients, against the same work done in process.

In one run, on one organism and the same prompts:
  * in process: the server's engine called directly, in batches of ``--max-batch`` (the
    best a single caller can do with the wrapper);
  * over HTTP: `assay serve` started as its own process on a loopback port, driven by 1, 8
    and 32 concurrent clients (threads, one request and one prompt each, keep-alive off).
Two kinds of work: scoring (``/v1/completions`` with echo, logprobs and max_tokens 0, as
lm-eval scores multiple choice) and short greedy generation (8 new tokens). Reported:
requests per second, latency percentiles, and the ratio of HTTP to in-process throughput.

    python benchmarks/serve_throughput.py [--organism xs] [--requests 256] [--max-batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import assay.training  # noqa: F401  (registers the organism: scheme)
from assay.models import load
from assay.serve.engine import Engine
from assay.world import render_prompt
from assay.world.evals import world_eval


def prompts(organism: str, n: int) -> list[str]:
    """``n`` chat prompts with their gold answer, from the organism's world questions."""
    from assay.training.organisms import organism_world

    items = world_eval(organism_world(organism.split("@")[0]), "facts")
    return [render_prompt(item.question) + item.choices[item.answer]
            for item in (items * (n // max(len(items), 1) + 1))[:n]]


def in_process(lm, texts: list[str], kind: str, batch: int) -> float:
    """Requests per second of the engine called directly in full batches."""
    engine = Engine(lm, max_batch=batch)
    ids = lm.encode(texts)
    start = time.perf_counter()
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        if kind == "score":
            engine.score(chunk, top=1)
        else:
            lm.generate_ids(chunk, 8, batch_size=batch)
    return len(ids) / (time.perf_counter() - start)


def request(url: str, body: dict) -> float:
    data = json.dumps(body).encode()
    start = time.perf_counter()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as reply:
        json.loads(reply.read())
    return time.perf_counter() - start


def over_http(base: str, model: str, texts: list[str], kind: str, clients: int
              ) -> tuple[float, list[float]]:
    """(requests per second, latencies) of ``clients`` concurrent clients."""
    def body(text):
        if kind == "score":
            return {"model": model, "prompt": text, "echo": True, "logprobs": 1,
                    "max_tokens": 0}
        return {"model": model, "prompt": text, "max_tokens": 8, "temperature": 0}

    with ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        latencies = list(pool.map(lambda t: request(f"{base}/completions", body(t)), texts))
        took = time.perf_counter() - start
    return len(texts) / took, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--organism", default="xs")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    model = f"organism:{args.organism}"
    lm = load(model)
    texts = prompts(args.organism, args.requests)

    server = subprocess.Popen(
        [sys.executable, "-m", "assay.cli", "serve", model, "--port", "0",
         "--max-batch", str(args.max_batch), "--max-queue", str(4 * args.requests)],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = server.stdout.readline()
        if " at " not in line:
            sys.exit(f"the server did not start: {line!r}")
        base = line.split(" at ")[1].strip()
        request(f"{base}/completions", {"model": model, "prompt": "warm", "max_tokens": 1})
        print(f"{model}, {lm.n_params / 1e6:.2f}M parameters, {args.requests} requests, "
              f"max batch {args.max_batch}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
        print("| work | clients | in process req/s | HTTP req/s | ratio | p50 ms | p95 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for kind in ("score", "generate"):
            base_rps = in_process(lm, texts, kind, args.max_batch)
            for clients in (1, 8, 32):
                n = texts if clients > 1 else texts[: max(16, len(texts) // 8)]
                rps, lat = over_http(base, model, n, kind, clients)
                print(f"| {kind} | {clients} | {base_rps:,.1f} | {rps:,.1f} | "
                      f"{rps / base_rps:.2f}x | {1000 * percentile(lat, 50):.0f} | "
                      f"{1000 * percentile(lat, 95):.0f} |", flush=True)
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
