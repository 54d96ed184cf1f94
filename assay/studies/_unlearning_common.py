"""What the unlearning studies share: an organism, its forget and retain sets, method names,
the difference of two rates (paired where both models answered the same items), and the
pooling of per-item results over training runs (`train_seeds`)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from assay.methods.stats import Estimate, paired_difference, seed_cluster_paired, wilson
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


def run_seed(ctx: Context, train_seed: int) -> int:
    """The seed of one training run (unlearning, relearning): the unit's seed and the
    training seed together, so units and runs never share a batch order."""
    return 1000 * ctx.seed + train_seed


def paired(a, b, key: str, level: float = 0.95) -> Estimate:
    """Rate ``key`` of battery card ``a`` minus card ``b``: both models answered the same
    items, so the difference is paired, resampling whole subjects (`paired_difference`, never
    narrower than Tango's interval of the pairs)."""
    (ha, clusters), (hb, _) = a.hits[key], b.hits[key]
    return paired_difference(ha, hb, clusters, level=level)


def paired_runs(a: Mapping[int, Sequence[float]], b: Mapping[int, Sequence[float]],
                clusters: Sequence[str], level: float = 0.95) -> Estimate:
    """mean(a - b) pooled over training runs: ``a[t][i]`` and ``b[t][i]`` are item ``i``
    (about subject ``clusters[i]``) measured on two models of training run ``t`` (a model the
    study does not train is the same in every run). Pairs stay within their run; the interval
    resamples runs, then subjects within each (`seed_cluster_paired`: for 0/1 readings never
    narrower than Tango's score interval of the pooled pairs)."""
    runs = sorted(a)
    x = np.concatenate([np.asarray(a[t], float) for t in runs])
    y = np.concatenate([np.asarray(b[t], float) for t in runs])
    return seed_cluster_paired(x, y, np.repeat(runs, len(clusters)), list(clusters) * len(runs),
                               level=level)


def paired_cards(a: Mapping[int, dict], b: Mapping[int, dict], key: str,
                 level: float = 0.95) -> Estimate:
    """`paired_runs` for rate ``key`` of two models' battery cards, one card per training run."""
    clusters = next(iter(a.values())).hits[key][1]
    return paired_runs({t: card.hits[key][0] for t, card in a.items()},
                       {t: b[t].hits[key][0] for t in a}, clusters, level)


def pooled_rate(hits: Mapping[int, Sequence[bool]]) -> Estimate:
    """A rate pooled over training runs (Wilson over every run's items: descriptive; the
    decisions read `paired_runs`)."""
    flat = [bool(h) for t in sorted(hits) for h in hits[t]]
    return wilson(sum(flat), len(flat))


def across_runs(estimates: Sequence[Estimate]) -> Estimate:
    """One reading from several training runs: itself for one run; otherwise the mean, with
    an interval spanning the runs' own (descriptive, for readings without per-item results)."""
    if len(estimates) == 1:
        return estimates[0]
    return Estimate(value=float(np.mean([e.value for e in estimates])),
                    ci_low=min(e.ci_low for e in estimates),
                    ci_high=max(e.ci_high for e in estimates),
                    n=sum(e.n for e in estimates), method="mean of training runs, span of their "
                    "intervals", level=estimates[0].level)


def pooled_card(cards: Mapping[int, dict]) -> dict[str, Estimate]:
    """A battery card pooled over training runs: per-item rates pooled (`pooled_rate`), the
    other readings averaged (`across_runs`)."""
    first = next(iter(cards.values()))
    if len(cards) == 1:
        return dict(first)
    return {name: pooled_rate({t: c.hits[name][0] for t, c in cards.items()})
            if name in first.hits else across_runs([c[name] for c in cards.values()])
            for name in first}
