"""The local executor against Ray with one and with two single-threaded workers, in one run.

The same quick units (a study on organism xs, one unit per seed) run three ways, each into a
fresh store: the local executor (one process, torch on every core), Ray with one worker of
one thread, and Ray with two workers of one thread each. Ray's start-up is timed on its own
and inside the total, since a user pays it. Reports units per minute with and without the
start-up, the ratio to the local executor, and checks that the two Ray runs (both one thread
per unit) stored the same numbers.

    python benchmarks/executor_scaling.py [--study error-bars] [--units 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# units of about half a minute each on two cores, long enough that Ray's start-up (about
# 10 s, plus importing torch in each worker) does not decide the comparison
SETS = {"error-bars": {"n_people": "24", "tune_people": "16", "tune_steps": "160",
                       "subset_people": "8", "n_subsets": "200"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="error-bars")
    parser.add_argument("--model", default="organism:xs")
    parser.add_argument("--units", type=int, default=8, help="units (seeds 0..N-1)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    import torch
    from transformers.utils import logging as hf_logging

    from assay.runner import Store, execute, plan
    from assay.runner.distributed import execute_ray, start_ray
    from assay.training.organisms import organism_path

    hf_logging.disable_progress_bar()
    if args.model.startswith("organism:"):
        organism_path(args.model.split(":", 1)[1])  # trained before any clock starts
    units = plan([args.study], model=args.model, seeds=range(args.units),
                 sets=SETS.get(args.study, {}))
    cores = os.cpu_count() or 1
    def local(store):
        return execute(units, store), 0.0

    def on_ray(workers):
        def run(store):
            start = time.perf_counter()
            start_ray(ray, None, workers, 1)
            up = time.perf_counter() - start
            try:
                return execute_ray(units, store, workers=workers, threads=1), up
            finally:
                ray.shutdown()
        return run

    runs = [(f"local, 1 process x {torch.get_num_threads()} threads", local),
            ("ray, 1 worker x 1 thread", on_ray(1)), ("ray, 2 workers x 1 thread", on_ray(2))]
    rows, stored = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, run) in enumerate(runs):
            with Store(Path(tmp) / f"store{i}") as store:
                start = time.perf_counter()
                records, up = run(store)
                wall = time.perf_counter() - start
            failed = [r for r in records if r.status != "done"]
            if failed:
                raise SystemExit(f"{name}: {len(failed)} unit(s) failed: {failed[0].error}")
            stored[name] = {r.key: r.to_json()["metrics"] for r in records}
            rows.append({"run": name, "units": len(records), "seconds": round(wall, 1),
                         "start_up_seconds": round(up, 1),
                         "units_per_minute": round(60 * len(records) / wall, 2),
                         "units_per_minute_after_start_up": round(60 * len(records) / (wall - up), 2)})
            print(f"{name}: {len(records)} units in {wall:.1f} s ({up:.1f} s start-up)", flush=True)
    base = rows[0]["units_per_minute"]
    for row in rows:
        row["ratio"] = round(row["units_per_minute"] / base, 2)
        row["ratio_after_start_up"] = round(row["units_per_minute_after_start_up"] / base, 2)
    one, two = stored[runs[1][0]], stored[runs[2][0]]
    print(f"\n{args.units} units of {args.study} on {args.model}, {cores} cores")
    print("| run | seconds | of which start-up | units/min | ratio to local | ratio after "
          "start-up |\n| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['run']} | {row['seconds']} | {row['start_up_seconds']} | "
              f"{row['units_per_minute']} | {row['ratio']}x | {row['ratio_after_start_up']}x |")
    print(f"\nRay with 1 and with 2 workers stored the same metrics: {one == two}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
