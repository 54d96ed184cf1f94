"""Multiple-choice scoring: assay's `score_items` against lm-eval 0.4.13, side by side in one run.

Both score the same organism folder (fp32 on the CPU) on the same items: the world
evaluation exported by `assay.export.export_lm_eval` (the organism's chat format, options
hidden, each option's summed log-likelihood; ``acc`` is the argmax). lm-eval runs in
process (``simple_evaluate`` on one already loaded ``HFLM`` with ``add_bos_token=True``,
its batch size set per run), from its task YAML over the exported JSON lines, as a user
of the export would run it; its wall time counts the whole call (task and dataset set-up,
tokenisation, the model, metrics), and the time inside ``HFLM.loglikelihood`` is
reported apart. assay's wall time counts ``score_items`` (rendering, tokenisation, the
model): each item's prompt and options run as one packed row under a tree-shaped
attention mask, where lm-eval runs prompt and option together once per option. Both use the
same torch threads.

assay runs first and last (its items/s is over both runs, so drift hits it as it hits the
lm-eval runs in between), after a warm-up of each library on a few items. Every
per-option log-likelihood of lm-eval is compared with assay's.

    python benchmarks/scoring_vs_lm_eval.py [--organism s] [--eval facts] [--limit 1200]
        [--batch-sizes 64,1] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub and datasets import
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_CACHE", "/tmp/assay-bench-datasets")  # not the user's cache

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from assay.export import export_lm_eval, task_name  # noqa: E402
from assay.methods.evaluation import score_items  # noqa: E402
from assay.models import load  # noqa: E402
from assay.training.organisms import organism_path  # noqa: E402
from assay.training.recipes import get_recipe  # noqa: E402
from assay.world import World, WorldConfig  # noqa: E402
from assay.world.evals import world_eval  # noqa: E402
from assay.world.world import WORLD_PRESETS  # noqa: E402


def run_assay(lm, items) -> dict:
    start = time.perf_counter()
    scores, answers = score_items(lm, items)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "scores": scores, "answers": answers}


def run_lm_eval(hflm, tasks, name: str, batch_size: int, limit: int | None = None) -> dict:
    """One ``simple_evaluate`` of the exported task. The time in ``HFLM.loglikelihood``
    (tokenising and the model) is measured apart from the rest (task, dataset, contexts,
    metrics), and its answers are kept there, so no sample logging slows the call."""
    import lm_eval

    hflm.batch_size_per_gpu = batch_size
    inner, spent, samples = hflm.loglikelihood, [], {}

    def timed(requests, **kwargs):
        start = time.perf_counter()
        results = inner(requests, **kwargs, disable_tqdm=True)  # no progress bars
        spent.append(time.perf_counter() - start)
        for req, (ll, _) in zip(requests, results):  # one request per (item, option)
            samples.setdefault(req.doc["id"], {})[req.idx] = ll
        return results

    hflm.loglikelihood = timed
    try:
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(model=hflm, tasks=[name], limit=limit,
                                      task_manager=tasks, bootstrap_iters=0)
        seconds = time.perf_counter() - start
    finally:
        del hflm.loglikelihood  # back to the class's method
    return {"seconds": seconds, "loglikelihood_seconds": sum(spent),
            "samples": {k: [v[i] for i in sorted(v)] for k, v in samples.items()},
            "acc": out["results"][name]["acc,none"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organism", default="s", help="organism whose folder both score")
    parser.add_argument("--eval", default="facts", help="world evaluation to export and score")
    parser.add_argument("--limit", type=int, default=1200, help="first N items (0: all)")
    parser.add_argument("--batch-sizes", default="64,1",
                        help="lm-eval batch sizes, one run each (1 is its default; assay uses 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # no per-run INFO lines
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    recipe = get_recipe(args.organism.partition("@")[0])
    world = next((n for n in WORLD_PRESETS if WorldConfig.preset(n) == recipe.world), None)
    if world is None:
        parser.error(f"organism {args.organism} learns no world preset: choose xs or s")
    folder = organism_path(args.organism)  # trained once and cached; loads in a second
    items = world_eval(World(recipe.world), args.eval)[:args.limit or None]
    lm = load(f"hf:{folder}")
    hflm = HFLM(pretrained=str(folder), dtype="float32", add_bos_token=True, device="cpu")
    name = task_name(args.eval, world)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        task_dir = export_lm_eval(args.eval, Path(tmp) / "task", world=world, limit=len(items))
        tasks = TaskManager(include_path=str(task_dir), include_defaults=False)  # ours only
        run_lm_eval(hflm, tasks, name, batch_sizes[0], limit=8)  # warm-up: dataset cache,
        run_assay(lm, items[:8])                                 # lazy init, allocator
        first = run_assay(lm, items)
        lm_eval_runs = {b: run_lm_eval(hflm, tasks, name, b) for b in batch_sizes}
        last = run_assay(lm, items)

    n = len(items)
    assay_seconds = (first["seconds"] + last["seconds"]) / 2
    scores, answers = first["scores"], first["answers"]
    assay_acc = float(np.mean([int(np.argmax(s)) == a for s, a in zip(scores, answers)]))
    rows = {"assay": {"batch_size": 64, "seconds": assay_seconds, "items_per_s": n / assay_seconds,
                      "acc": assay_acc, "runs_seconds": [first["seconds"], last["seconds"]]}}
    for b, r in lm_eval_runs.items():
        diff = max(float(np.abs(np.asarray(r["samples"][item.id]) - s).max())
                   for item, s in zip(items, scores))
        loglik = r["loglikelihood_seconds"]
        rows[f"lm_eval_bs{b}"] = {
            "batch_size": b, "seconds": r["seconds"], "items_per_s": n / r["seconds"],
            "loglikelihood_seconds": loglik, "loglikelihood_items_per_s": n / loglik,
            "acc": r["acc"], "max_abs_diff": diff,
            "ratio": r["seconds"] / assay_seconds,  # assay's items/s over lm-eval's whole call
            "ratio_loglikelihood": loglik / assay_seconds}  # ... over its scoring alone

    n_choices = sum(len(s) for s in scores)
    print(f"organism {args.organism} ({lm.n_params / 1e6:.2f}M params, fp32), eval {args.eval}: "
          f"{n} items, {n_choices} options, {torch.get_num_threads()} threads")
    print(f"{'run':13s} {'batch':>5s} {'items/s':>8s} {'assay is':>8s}   {'loglikelihood':>13s} "
          f"{'assay is':>8s}   {'acc':>5s} {'max |diff|':>10s}")
    for key, r in rows.items():
        if key == "assay":
            print(f"{key:13s} {r['batch_size']:5d} {r['items_per_s']:8.1f} {'':8s}   {'':13s} "
                  f"{'':8s}   {r['acc']:5.3f}")
            continue
        print(f"{key:13s} {r['batch_size']:5d} {r['items_per_s']:8.1f} {r['ratio']:7.2f}x   "
              f"{r['loglikelihood_items_per_s']:13.1f} {r['ratio_loglikelihood']:7.2f}x   "
              f"{r['acc']:5.3f} {r['max_abs_diff']:10.2e}")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"config": config, "items": n, "options": n_choices,
                                         "params": lm.n_params, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
