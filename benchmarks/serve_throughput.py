"""`assay serve` under concurrent clients, against the same work done in process.

In one run, on one organism and the same prompts:
  * in process: the server's engine called directly, in batches of ``--max-batch`` (the
    best a single caller can do with the wrapper);
  * over HTTP: `assay serve` started as its own process on a loopback port, driven by 1, 8
    and 32 concurrent clients (threads, one prompt per request, each thread keeping its
    connection open as HTTP clients such as the ``openai`` client's pool do).
Two kinds of work: scoring (``/v1/completions`` with echo, logprobs and max_tokens 0, as
lm-eval scores multiple choice) and short greedy generation (8 new tokens). Reported:
requests per second, latency percentiles, and the ratio of HTTP to in-process throughput.

    python benchmarks/serve_throughput.py [--organism xs] [--requests 256] [--max-batch 32]
        [--untrained l]

``--untrained NAME`` times a model of recipe NAME's shape with random weights and the
organism's tokenizer instead of the trained organism: speed depends on the shape, not on
the weights, and this measures sizes no CPU trains in minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

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


def untrained(recipe: str, tokenizer) -> str:
    """The spec of a folder holding a randomly initialised model of ``recipe``'s shape."""
    import atexit
    import shutil
    import tempfile

    from assay.training.organisms import fresh_model
    from assay.training.recipes import RECIPES

    folder = tempfile.mkdtemp(prefix=f"untrained-{recipe}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    fresh_model(RECIPES[recipe], tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return f"hf:{folder}"


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


_local = threading.local()


def request(url: str, body: dict) -> float:
    """Seconds for one POST on this thread's kept-alive connection; any status but 200 stops
    the benchmark."""
    parts = urlsplit(url)
    if getattr(_local, "netloc", None) != parts.netloc:
        _local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        _local.conn.connect()
        # headers and body go out as two writes: without this, delayed ACKs add ~40 ms
        _local.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _local.netloc = parts.netloc
    data = json.dumps(body).encode()
    start = time.perf_counter()
    _local.conn.request("POST", parts.path, data, {"Content-Type": "application/json"})
    reply = _local.conn.getresponse()
    payload = reply.read()
    if reply.status != 200:
        raise SystemExit(f"the server answered {reply.status}: {payload[:200]!r}")
    json.loads(payload)
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
    parser.add_argument("--untrained", metavar="RECIPE",
                        help="time an untrained model of this recipe's shape")
    args = parser.parse_args()
    model = f"organism:{args.organism}"
    if args.untrained:
        model = untrained(args.untrained, load(model).tokenizer)
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
