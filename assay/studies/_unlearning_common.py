"""What the unlearning studies share: an organism, its forget and retain sets, method names,
and the difference of two rates (paired where both models answered the same items)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from assay.methods.stats import Estimate, paired_difference, two_proportion_test
from assay.study import Context
from assay.world import Document, World, documents

Method = Literal["ga", "gd", "npo", "rmu"]  # the methods of assay.methods.unlearning


@dataclass
class Setup:
    organism: str         # recipe name, e.g. "s"; its retain-only twin is "<name>-retain"
    world: World
    forget: list[Document]  # every synthesis document
    retain: list[Document]  # benign documents the unlearning must keep


def setup(ctx: Context, retain_docs: int) -> Setup:
    """The organism this unit runs on, with forget and retain sets (fixed for the seed).

    The study declares ``Needs(organism=True)``: it compares against the organism's
    retain-only twin, which only an organism recipe has.
    """
    organism = ctx.recipe
    world = ctx.world(organism)
    benign = [d for d in documents(world) if not d.hazardous]
    retain = random.Random(f"retain-{ctx.seed}").sample(benign, min(retain_docs, len(benign)))
    return Setup(organism, world, documents(world, ("synthesis",)), retain)


def difference(a: Estimate, b: Estimate, level: float = 0.95) -> Estimate:
    """``a - b`` for two Wilson rates, with a Newcombe interval at ``level``."""
    return two_proportion_test(round(a.value * a.n), a.n, round(b.value * b.n), b.n,
                               level=level).difference


def paired(a, b, key: str, level: float = 0.95) -> Estimate:
    """Rate ``key`` of battery card ``a`` minus card ``b``: both models answered the same
    items, so the difference is paired, resampling whole subjects (`paired_difference`)."""
    (ha, clusters), (hb, _) = a.hits[key], b.hits[key]
    return paired_difference(ha, hb, clusters, level=level)
