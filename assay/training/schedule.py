"""What a run will train and about how long it takes.

A run knows every organism its units will load before it starts (each study declares its
own, ``@study(organisms=...)``), so it can say what is missing and how long training it
takes, and order its units so that verdicts needing nothing new come first.

Organisms are trained one at a time, in the run's process, with all its threads: side by
side in one-thread processes they trained the ladder only 1.08x as fast on 2 cores
(`benchmarks/organism_training.py`), and a one-thread build is another draw of the recipe
than a two-thread one, so the draw of ``s`` would depend on which study asked first.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from assay.training.organisms import is_complete, parse_name, stage_dir
from assay.training.trainer import flops_per_token

__all__ = ["STEP_SECONDS", "TRAIN_FLOPS", "missing", "stage_seconds", "train_seconds"]

# The trainer's speed on an idle 2-core machine, fitted over the ladder's five sizes at 150
# steps (seconds per step = STEP_SECONDS + FLOPs per step / TRAIN_FLOPS; every rung within
# 10 ms): the overhead dominates the smallest rungs, the FLOPs the largest. The same machine
# shared with other jobs trained up to twice as slowly.
STEP_SECONDS = 0.045
TRAIN_FLOPS = 125e9


def _stages_to_build(name: str) -> list[int]:
    recipe, index = parse_name(name)
    return [i for i in range(index + 1) if not is_complete(stage_dir(recipe, i))]


def stage_seconds(name: str) -> dict[str, float]:
    """About how long each stage of organism ``name`` not yet in the cache takes to train on an
    idle 2-core CPU, keyed by the stage's recipe hash (``s`` and ``s@pretrain`` share a key)."""
    recipe, _ = parse_name(name)
    m = recipe.model
    config = SimpleNamespace(hidden_size=m.d_model, num_hidden_layers=m.n_layer,
                             num_attention_heads=m.n_head, intermediate_size=m.d_ff,
                             vocab_size=m.vocab_size)
    out = {}
    for i in _stages_to_build(name):
        st = recipe.stages[i]
        row = st.row_len(m)
        step = STEP_SECONDS + flops_per_token(config, row) * st.batch_size * row / TRAIN_FLOPS
        out[recipe.prefix(i).hash] = st.train.steps * step
    return out


def train_seconds(name: str) -> float:
    """About how long organism ``name`` takes to train on 2 CPU cores, counting only its
    stages not yet in the cache (0 when it is cached)."""
    return sum(stage_seconds(name).values())


def missing(names: Sequence[str]) -> list[str]:
    """The organisms among ``names`` that must be trained, one per stage chain: ``s@pretrain``
    is left out when ``s`` is there too (building ``s`` builds its pretrain stage)."""
    chains: dict[str, tuple[str, int]] = {}  # recipe name -> (organism name, deepest stage)
    for name in dict.fromkeys(names):
        if not _stages_to_build(name):
            continue
        recipe, index = parse_name(name)
        if recipe.name not in chains or chains[recipe.name][1] < index:
            chains[recipe.name] = (name, index)
    return [name for name, _ in chains.values()]
