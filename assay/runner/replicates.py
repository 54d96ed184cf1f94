"""Organism replicates read together: does a verdict hold across draws of the organism?

An organism is one training run: the same recipe with another seed (``s~1``, ``s~2``; see
`assay.training.recipes.get_recipe`) gives other weights, and a verdict that flips with
the draw is a verdict about that draw, not about the claim. `replicated` groups the done
units of one study that ran on several replicates of one organism recipe (same profile,
same config) and reads them together:

- every draw agrees: that status;
- any draw's control fired: ``confounded``, with the count;
- otherwise the draws disagree and the combined verdict is ``inconclusive``, with the
  count of each status, because the evidence then depends on which draw a user gets.

Each metric the study's decision rule reads is reported as its spread across draws
(every draw's value, the lowest and the highest).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from assay.models import ModelSpec
from assay.runner.store import Record

__all__ = ["Replicated", "Spread", "combine", "replicated"]

_ORDER = ("supported", "not supported", "inconclusive", "confounded")


@dataclass(frozen=True)
class Spread:
    """One decision metric across draws: ``values`` maps a draw (``s~1 seed 0``) to its value."""

    metric: str
    values: dict[str, float]

    @property
    def low(self) -> float:
        return min(self.values.values())

    @property
    def high(self) -> float:
        return max(self.values.values())


@dataclass(frozen=True)
class Replicated:
    """One study's units on several replicates of one organism, read together."""

    study: str
    profile: str
    organism: str                   # the recipe the replicates share, e.g. "s"
    draws: dict[str, str]           # draw label ("s~1 seed 0") -> that unit's status
    status: str                     # the combined status (see `combine`)
    statement: str                  # one line: how the draws voted and what that makes
    spread: tuple[Spread, ...]      # each decision metric across draws

    @property
    def replicates(self) -> int:
        return len({label.split(" ")[0] for label in self.draws})


def combine(statuses: Sequence[str]) -> tuple[str, str]:
    """The combined status of several draws' statuses, and a sentence saying why."""
    if not statuses:
        raise ValueError("no statuses to combine")
    counts = Counter(statuses)
    n = len(statuses)
    tally = ", ".join(f"{counts[s]} {s}" for s in _ORDER if counts[s])
    if counts["confounded"]:
        return "confounded", (f"{counts['confounded']} of {n} draws confounded (their control "
                              f"fired): {tally}")
    if len(counts) == 1:
        return statuses[0], f"all {n} draws {statuses[0]}"
    return "inconclusive", f"draws disagree ({tally}), so the claim is inconclusive across draws"


def _draw(record: Record) -> tuple[str, str] | None:
    """(recipe, draw label) of an organism unit, e.g. ("s", "s~1 seed 0"); None otherwise."""
    from assay.training.recipes import replicate_of

    spec = ModelSpec.parse(record.model)
    if not spec.is_organism:
        return None
    base, _ = replicate_of(spec.organism)
    return base, f"{spec.organism} seed {record.seed}"


def _decision_metrics(record: Record) -> tuple[str, ...]:
    from assay.study import discover, get_study

    try:
        discover()
        spec = get_study(record.study)
        return spec.rule(spec.config.model_validate(record.config)).reads()
    except Exception:  # an unregistered study or a config from an older version: no headline
        return ()


def replicated(records: Sequence[Record]) -> list[Replicated]:
    """The studies in ``records`` (done units) that ran on two or more replicates of one
    organism, each read across its draws; sorted by study."""
    groups: dict[tuple, list[tuple[str, Record]]] = {}
    for record in records:
        if record.result is None or (draw := _draw(record)) is None:
            continue
        base, label = draw
        key = (record.study, record.profile, base, json.dumps(record.config, sort_keys=True))
        groups.setdefault(key, []).append((label, record))
    out = []
    for (study, profile, base, _), members in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        if len({label.split(" ")[0] for label, _ in members}) < 2:
            continue  # one draw: nothing to read across
        members.sort(key=lambda m: m[0])
        draws = {label: r.result.status for label, r in members}
        status, statement = combine(list(draws.values()))
        spread = []
        for metric in _decision_metrics(members[0][1]):
            values = {label: r.result.metrics[metric].value for label, r in members
                      if metric in r.result.metrics}
            if values:
                spread.append(Spread(metric, values))
        out.append(Replicated(study, profile, base, draws, status, statement, tuple(spread)))
    return out
