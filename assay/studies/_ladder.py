"""The scaling ladder the 2.3 / 2.4 studies share: organisms of five sizes, each trained for
three token budgets on the default world (recipes ``ladder-<d_model>-<steps>``), trained on
first use and cached like every organism. The composition ladder (``compose-<d_model>-<steps>``,
family ``compose``) has the same sizes and budgets with two-hop answers taught for half the
people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from assay.errors import AssayError
from assay.training.recipes import (
    LADDER_SIZES,
    LADDER_STEPS,
    compose_name,
    get_recipe,
    ladder_name,
    replicate_name,
)
from assay.world.chat import END


@dataclass(frozen=True)
class Run:
    name: str
    d_model: int
    steps: int
    n_params: int   # non-embedding parameters, N
    tokens: int     # training tokens, D
    seed: int = 0   # training seed: the ladder's replicate (ladder-64-300~1 is seed 1)


FAMILIES = {"ladder": ladder_name, "compose": compose_name}  # family -> rung name


def ladder_runs(sizes: Sequence[int], steps: Sequence[int], family: str = "ladder"
                ) -> list[tuple[str, int, int]]:
    """(name, d_model, steps) of the requested rungs, an error for ones the ladder lacks."""
    bad = [s for s in sizes if s not in LADDER_SIZES] + [s for s in steps if s not in LADDER_STEPS]
    if bad:
        raise AssayError(f"the ladder has sizes {list(LADDER_SIZES)} and budgets "
                         f"{list(LADDER_STEPS)} (steps); got {bad[0]}")
    if family not in FAMILIES:
        raise AssayError(f"unknown ladder {family!r}: choose from {', '.join(FAMILIES)}")
    return [(FAMILIES[family](d, s), d, s) for d in sizes for s in steps]


def ladder_organisms(sizes: Sequence[int], steps: Sequence[int],
                     seeds: Sequence[int] = (0,), family: str = "ladder") -> list[str]:
    """The organism names `load_runs` loads for these rungs and training seeds: what a
    ladder study declares (``@study(organisms=...)``) so a run trains them up front."""
    return [replicate_name(name, k) for k in seeds
            for name, _, _ in ladder_runs(sizes, steps, family)]


def load_runs(ctx, sizes: Sequence[int], steps: Sequence[int], start: float = 0.0,
              share: float = 0.5, seeds: Sequence[int] = (0,), family: str = "ladder"
              ) -> list[tuple[Run, object]]:
    """Every requested rung of every requested training seed as (Run, LM), seed by seed,
    training missing ones with progress. Seed k is the rung's replicate ``~k``, cached apart."""
    out = []
    wanted = [(replicate_name(name, k), d, s, k) for k in seeds
              for name, d, s in ladder_runs(sizes, steps, family)]
    for j, (name, d, s, k) in enumerate(wanted):
        ctx.report(f"loading {name}", start + share * j / len(wanted))
        lm = ctx.organism(name)
        recipe = get_recipe(name)
        tokens = s * recipe.stages[0].batch_size * recipe.model.seq_len
        out.append((Run(name, d, s, non_embedding_params(lm.model), tokens, k), lm))
    return out


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters outside the token embedding and the output layer."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def eval_loss(lm, texts: Sequence[str], seq_len: int = 128) -> float:
    """Mean next-token loss (nats per token) over ``texts``, each cut to ``seq_len`` tokens."""
    from assay.methods.membership import token_stats

    return float(-np.concatenate([t.logprob for t in token_stats(lm, texts, max_tokens=seq_len)]).mean())


def heldout_loss(lm, items: Sequence) -> float:
    """Mean next-token loss (nats per token) of the replies of held-out dialogues given their
    requests: the tokens a ladder run was trained to predict on its dialogue sources, in
    wordings no run read."""
    scores = lm.score([lm.chat_prompt(d.user) for d in items],
                      [d.assistant + END for d in items])
    return float(-sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores))


def passes(lm, world, mixture: Sequence[tuple[str, float]], tokens: int) -> dict[str, float]:
    """About how many times a run of ``tokens`` training tokens reads each source of its
    ``mixture`` (weights are per example; packing's padding ignored)."""
    from assay.training.data import source_examples

    sizes = {name: [len(ex.ids) for ex in source_examples(world, name, lm.tokenizer, 10**6)]
             for name, _ in mixture}
    total = sum(w for _, w in mixture)
    per_example = sum(w / total * float(np.mean(sizes[name])) for name, w in mixture)
    drawn = tokens / per_example
    return {name: drawn * w / total / len(sizes[name]) for name, w in mixture}


def smooth_share(values: np.ndarray) -> float:
    """The largest single step between neighbouring rungs as a share of the whole rise from
    the first to the last (1: all at once, 1/(n-1): evenly spread); 0 without a rise."""
    rise = values[-1] - values[0]
    if rise <= 0:
        return 0.0
    return float(np.max(np.diff(values)) / rise)
