"""Trainer throughput against a minimal hand-written loop and against the matmul peak.

In one run, on the same LlamaConfig and the same pre-built batches:
  * the minimal loop: forward, cross-entropy, backward, AdamW step, nothing else;
  * assay's trainer: the same plus warm-up/cosine schedule, gradient clipping and the
    training curve;
and the fp32 matmul peak of this machine, measured in the same process. The two loops
alternate (A B A B ...) so drift in machine speed hits both alike; each reports the
median of its repeats.

    python benchmarks/train_throughput.py [--organism s] [--stage NAME] [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from assay.training.data import IGNORE, PackedBatches, encode, source_items
from assay.training.organisms import fresh_model, tokenizer_texts
from assay.training.recipes import get_recipe
from assay.training.tokenizer import train_tokenizer
from assay.training.trainer import TrainConfig, flops_per_token, train
from assay.world import World


def matmul_peak(n: int = 1024, iters: int = 30) -> float:
    """Best fp32 FLOP/s of an n x n matmul over a few timed rounds."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start))
    return best


def minimal_loop(model, batches, lr: float) -> float:
    """The baseline: seconds for one pass over ``batches`` with a bare PyTorch loop."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)
    start = time.perf_counter()
    for batch in batches:
        logits = model(**batch.model_inputs()).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(),
                               ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return time.perf_counter() - start


def assay_trainer(model, batches, lr: float) -> float:
    cfg = TrainConfig(steps=len(batches), lr=lr, warmup=5, log_every=10)
    return train(model, batches, cfg).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organism", default="s", help="recipe whose model and data to use")
    parser.add_argument("--stage", default=None, help="the recipe's stage to time (default: first)")
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each loop")
    args = parser.parse_args()

    recipe = get_recipe(args.organism)
    world = World(recipe.world)
    tokenizer = train_tokenizer(tokenizer_texts(world, recipe.tools), recipe.model.vocab_size,
                                tools=recipe.tools)
    stage = recipe.stages[recipe.stage_index(args.stage) if args.stage else 0]
    row = stage.row_len(recipe.model)
    mixture = [(encode(tokenizer, source_items(world, s)), w) for s, w in stage.mixture]
    batches = PackedBatches(mixture, stage.batch_size, row,
                            tokenizer.pad_token_id, seed=0).take(args.steps)
    tokens = sum(b.ids.numel() for b in batches)
    lr = stage.train.lr

    peak = matmul_peak()
    runs: dict[str, list[float]] = {"minimal loop": [], "assay trainer": []}
    model = fresh_model(recipe, tokenizer)
    minimal_loop(model, batches[:3], lr)  # warm-up: allocator, kernels
    for _ in range(args.repeats):
        for name, fn in (("minimal loop", minimal_loop), ("assay trainer", assay_trainer)):
            model = fresh_model(recipe, tokenizer)
            runs[name].append(tokens / fn(model, batches, lr))

    fpt = flops_per_token(model.config, row)
    params = sum(p.numel() for p in model.parameters())
    print(f"organism {recipe.name}: {params / 1e6:.2f}M params, batch "
          f"{stage.batch_size}x{row} ({stage.name}), {args.steps} steps x {args.repeats} "
          f"repeats, {torch.get_num_threads()} threads")
    print(f"matmul peak (fp32, 1024^3): {peak / 1e9:.1f} GFLOP/s")
    for name, tps in runs.items():
        rate = statistics.median(tps)
        print(f"{name:14s} {rate:9,.0f} tokens/s  {rate * fpt / 1e9:6.1f} GFLOP/s  "
              f"{rate * fpt / peak:5.1%} of peak   (runs: {', '.join(f'{t:,.0f}' for t in tps)})")
    ratio = statistics.median(runs["assay trainer"]) / statistics.median(runs["minimal loop"])
    share = statistics.median(runs["assay trainer"]) * fpt / peak
    print(f"ratio trainer / minimal loop: {ratio:.3f}x   trainer share of peak: {share:.1%}")


if __name__ == "__main__":
    main()
