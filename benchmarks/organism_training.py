"""Organisms trained one after another with every thread, against side by side with one
thread each, in one run.

The first way is what `assay run` does: each missing organism is built in the run's own
process with torch on every core. The second builds the same organisms in one-thread
processes, as many at a time as there are cores (the longest first). Each way trains into
a fresh organism cache; the report gives wall time, tokens per second, the ratio, and how
far the run's estimate (`train_seconds`, which `assay run` prints before it starts) was
from the sequential wall time. It is the measurement behind training one organism at a
time (`assay.training.schedule`).

    python benchmarks/organism_training.py                    # five ladder rungs, 150 steps
    python benchmarks/organism_training.py --organisms s,s~1  # two default organisms
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time

LADDER = "ladder-32-150,ladder-48-150,ladder-64-150,ladder-96-150,ladder-128-150"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _build(name: str) -> None:
    from assay.training.organisms import organism_path

    organism_path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organisms", default=LADDER, help="comma-separated organism names")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    names = [n.strip() for n in args.organisms.split(",") if n.strip()]

    import torch
    from transformers.utils import logging as hf_logging

    from assay.training.organisms import organism_path, parse_name
    from assay.training.schedule import missing, train_seconds

    hf_logging.disable_progress_bar()
    threads = torch.get_num_threads()
    rows = []
    for way in ("sequential", "side by side"):
        os.environ["ASSAY_HOME"] = tempfile.mkdtemp(prefix="assay-bench-")
        todo = missing(names)
        estimate = sum(train_seconds(n) for n in todo)
        start = time.perf_counter()
        if way == "sequential":
            for name in todo:
                organism_path(name)
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(threads, initializer=_one_thread) as pool:
                pool.map(_build, sorted(todo, key=train_seconds, reverse=True), chunksize=1)
        wall = time.perf_counter() - start
        tokens = 0
        for name in todo:
            recipe, index = parse_name(name)
            tokens += sum(st.train.steps * st.batch_size * recipe.model.seq_len
                          for st in recipe.stages[:index + 1])
        rows.append({"way": way, "organisms": len(todo), "threads": threads,
                     "wall_s": round(wall, 1), "tokens_per_s": round(tokens / wall),
                     "estimate_s": round(estimate, 1)})
        print(json.dumps(rows[-1]), flush=True)
    base, ours = rows
    print(f"side by side / sequential: {base['wall_s'] / ours['wall_s']:.2f}x the speed "
          f"({ours['wall_s']:.0f} s against {base['wall_s']:.0f} s for {len(names)} organisms "
          f"on {threads} threads); the run's estimate was {base['estimate_s']:.0f} s "
          f"({base['estimate_s'] / base['wall_s']:.2f}x the sequential wall time)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
