"""GCG: assay's `gcg` against nanoGCG 0.3.0 on the same problem, side by side in one run.

Both attack organism `s` (its Hugging Face folder, fp32 on the CPU) on the same hazard
requests of its world, with the same chat layout (the suffix follows the request text
inside the user turn: nanoGCG gets ``request.text + "{optim_str}"``), the same target
(the request's opening), the same initial suffix (``" x" * 10``, 20 tokens), the same
search width, top-k, one swap per candidate, every candidate scored in one batch,
retokenisation filtering on and early stopping off, so each runs exactly ``--steps``
steps. Each request rotates the order of the runs so drift in machine speed hits all
alike; the ratio is the median over requests.

Known differences, kept on purpose (each is what the library does): nanoGCG 0.3.0 fails
with transformers 5.x unless ``use_prefix_cache=False``, so it re-encodes the prompt
before the suffix for every candidate, while assay replays that prefix's key/value cache
and computes logits only over the target; nanoGCG filters candidates by re-encoding the
suffix alone, assay the whole prompt; assay also bans whitespace-only and chat tokens.
nanoGCG calls ``gc.collect()`` twice a step (to free GPU memory), which costs ~0.25 s in
any process that has transformers loaded; a third column runs nanoGCG with that call made
a no-op, to separate its housekeeping from its arithmetic. With the same seed, assay's
private generator and nanoGCG's global one draw the same candidates, so as long as the
top-k lists agree the two follow the same trajectory and their losses match.

nanoGCG pins transformers<=4.47.1, so it never enters assay's dependencies: on first use
this script runs ``pip install --no-deps nanogcg==0.3.0 --target benchmarks/.nanogcg``
and imports it from there.

    python benchmarks/gcg_vs_nanogcg.py [--steps 50] [--requests 3] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from assay.methods.attacks import GCGConfig, Request, gcg, hazard_requests
from assay.models import load
from assay.training.organisms import organism_path
from assay.training.recipes import get_recipe
from assay.world import World

NANOGCG_DIR = Path(__file__).resolve().parent / ".nanogcg"


def import_nanogcg():
    """nanoGCG 0.3.0 from benchmarks/.nanogcg, installed there without dependencies."""
    if not (NANOGCG_DIR / "nanogcg").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "nanogcg==0.3.0", "--target", str(NANOGCG_DIR)], check=True)
    sys.path.insert(0, str(NANOGCG_DIR))
    import nanogcg
    import nanogcg.gcg as impl
    import nanogcg.utils  # run_nanogcg patches its gc

    impl.tqdm = lambda it, **_: it                     # no progress bar
    logging.getLogger("nanogcg").setLevel(logging.ERROR)  # no fp32/CPU warnings, no buffer log
    return nanogcg


@dataclass
class Run:
    steps_per_s: float
    final_loss: float   # the loss of the suffix chosen at the last step
    best_loss: float    # the lowest loss over the steps (the initial suffix excluded)
    kept: float         # candidates per step that survived the retokenisation filter
    suffix: str         # the best suffix found


def run_assay(lm, request: Request, args, steps: int) -> Run:
    cfg = GCGConfig(steps=steps, search_width=args.width, topk=args.topk, n_replace=1,
                    early_stop=False, filter_ids=True, batch_size=args.width, seed=args.seed)
    start = time.perf_counter()
    art = gcg(lm, request, cfg)
    seconds = time.perf_counter() - start
    losses, kept = art.losses[1:], art.extra["kept"]  # losses[0] is the initial suffix's
    return Run(steps / seconds, losses[-1], min(losses), sum(kept) / len(kept),
               art.extra["suffix"])


def run_nanogcg(nanogcg, model, tokenizer, request: Request, args, steps: int,
                collect: bool = True) -> Run:
    cfg = nanogcg.GCGConfig(num_steps=steps, optim_str_init=" x" * 10, search_width=args.width,
                            topk=args.topk, n_replace=1, early_stop=False, filter_ids=True,
                            use_prefix_cache=False, verbosity="ERROR")
    kept, original = [], nanogcg.gcg.filter_ids

    def counting(ids, tok):
        out = original(ids, tok)
        kept.append(out.shape[0])
        return out

    nanogcg.gcg.filter_ids = counting
    if not collect:
        nanogcg.gcg.gc = nanogcg.utils.gc = SimpleNamespace(collect=lambda: 0)
    torch.manual_seed(args.seed)  # not cfg.seed: that turns on deterministic algorithms globally
    try:
        start = time.perf_counter()
        result = nanogcg.run(model, tokenizer, request.text + "{optim_str}", request.opening, cfg)
        seconds = time.perf_counter() - start
    finally:
        nanogcg.gcg.filter_ids = original
        nanogcg.gcg.gc = nanogcg.utils.gc = gc
    return Run(steps / seconds, result.losses[-1], result.best_loss, sum(kept) / len(kept),
               result.best_string)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="GCG steps per attack")
    parser.add_argument("--requests", type=int, default=3, help="hazard requests attacked")
    parser.add_argument("--width", type=int, default=128, help="candidates per step")
    parser.add_argument("--topk", type=int, default=64, help="token swaps per position")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for all runs (2 collapse when the 2 cores are shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    nanogcg = import_nanogcg()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = organism_path("s")  # trained once and cached; loads in a second
    lm = load(f"hf:{folder}")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    requests = hazard_requests(World(get_recipe("s").world))[:args.requests]
    variants = {
        "assay": lambda q, n: run_assay(lm, q, args, n),
        "nanogcg": lambda q, n: run_nanogcg(nanogcg, model, tokenizer, q, args, n),
        "nanogcg_nogc": lambda q, n: run_nanogcg(nanogcg, model, tokenizer, q, args, n, False),
    }
    for fn in variants.values():
        fn(requests[0], 2)  # warm-up: lazy init, allocator, kernels
    rows = []
    for i, q in enumerate(requests):
        names = list(variants)[i % 3:] + list(variants)[:i % 3]  # rotate the order: drift
        runs = {name: asdict(variants[name](q, args.steps)) for name in names}
        rows.append({"request": q.text, **{k: runs[k] for k in variants},
                     "ratio": runs["assay"]["steps_per_s"] / runs["nanogcg"]["steps_per_s"],
                     "ratio_nogc": runs["assay"]["steps_per_s"] / runs["nanogcg_nogc"]["steps_per_s"]})

    print(f"organism s ({lm.n_params / 1e6:.2f}M params, fp32), {args.steps} steps, width "
          f"{args.width}, top-k {args.topk}, {torch.get_num_threads()} threads")
    print(f"{'request':34s} {'assay':>6s} {'nanoGCG':>7s} {'no gc':>6s} (steps/s)  {'ratio':>5s} "
          f"{'no gc':>5s}   {'assay final/best':>16s}  {'nanoGCG final/best':>18s}  kept a/n")
    for r in rows:
        a, n, g = r["assay"], r["nanogcg"], r["nanogcg_nogc"]
        print(f"{r['request'][:34]:34s} {a['steps_per_s']:6.2f} {n['steps_per_s']:7.2f} "
              f"{g['steps_per_s']:6.2f}            {r['ratio']:4.2f}x {r['ratio_nogc']:4.2f}x   "
              f"{a['final_loss']:7.3f}/{a['best_loss']:<8.3f}  {n['final_loss']:9.3f}/"
              f"{n['best_loss']:<8.3f}  {a['kept']:.0f}/{n['kept']:.0f}")

    def med(key: str, side: str | None = None) -> float:
        return statistics.median(r[side][key] if side else r[key] for r in rows)

    summary = {"ratio": med("ratio"), "ratio_nogc": med("ratio_nogc"),
               **{f"{s}_{k}": med(k, s) for s in variants
                  for k in ("steps_per_s", "final_loss", "best_loss")}}
    print(f"median ratio assay / nanoGCG: {summary['ratio']:.2f}x (gc.collect off: "
          f"{summary['ratio_nogc']:.2f}x)   median final / best loss: assay "
          f"{summary['assay_final_loss']:.3f} / {summary['assay_best_loss']:.3f}, nanoGCG "
          f"{summary['nanogcg_final_loss']:.3f} / {summary['nanogcg_best_loss']:.3f}")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"config": config, "rows": rows, "summary": summary},
                                        indent=2))


if __name__ == "__main__":
    main()
