"""The scaling ladder the 2.3 / 2.4 studies share: organisms of five sizes, each trained for
three token budgets on the default world (recipes ``ladder-<d_model>-<steps>``), trained on
first use and cached like every organism."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from assay.errors import AssayError
from assay.training.recipes import LADDER_SIZES, LADDER_STEPS, get_recipe, ladder_name


@dataclass(frozen=True)
class Run:
    name: str
    d_model: int
    steps: int
    n_params: int   # non-embedding parameters, N
    tokens: int     # training tokens, D


def ladder_runs(sizes: Sequence[int], steps: Sequence[int]) -> list[tuple[str, int, int]]:
    """(name, d_model, steps) of the requested rungs, an error for ones the ladder lacks."""
    bad = [s for s in sizes if s not in LADDER_SIZES] + [s for s in steps if s not in LADDER_STEPS]
    if bad:
        raise AssayError(f"the ladder has sizes {list(LADDER_SIZES)} and budgets "
                         f"{list(LADDER_STEPS)} (steps); got {bad[0]}")
    return [(ladder_name(d, s), d, s) for d in sizes for s in steps]


def load_runs(ctx, sizes: Sequence[int], steps: Sequence[int], start: float = 0.0,
              share: float = 0.5) -> list[tuple[Run, object]]:
    """Every requested rung as (Run, LM), training missing ones with progress."""
    out = []
    wanted = ladder_runs(sizes, steps)
    for j, (name, d, s) in enumerate(wanted):
        ctx.report(f"loading {name}", start + share * j / len(wanted))
        lm = ctx.organism(name)
        recipe = get_recipe(name)
        tokens = s * recipe.stages[0].batch_size * recipe.model.seq_len
        out.append((Run(name, d, s, non_embedding_params(lm.model), tokens), lm))
    return out


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters outside the token embedding and the output layer."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def eval_loss(lm, texts: Sequence[str], seq_len: int = 128) -> float:
    """Mean next-token loss (nats per token) over ``texts``, each cut to ``seq_len`` tokens."""
    from assay.methods.membership import token_stats

    return float(-np.concatenate([t.logprob for t in token_stats(lm, texts, max_tokens=seq_len)]).mean())


def smooth_share(values: np.ndarray) -> float:
    """The largest single step between neighbouring rungs as a share of the whole rise from
    the first to the last (1: all at once, 1/(n-1): evenly spread); 0 without a rise."""
    rise = values[-1] - values[0]
    if rise <= 0:
        return 0.0
    return float(np.max(np.diff(values)) / rise)
