"""What the 3.1 attribution studies share: the world's biographies cut into the sentences
that state one fact each, the chance level of a ranking, and where influence factors live."""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np

from assay.world import documents
from assay.world.documents import state
from assay.world.relations import RELATIONS
from assay.world.world import Fact, World


@dataclass(frozen=True)
class Sentence:
    text: str
    fact: Fact
    doc: str  # the id of the training document it comes from


def fact_sentences(world: World, people: list[str]) -> list[Sentence]:
    """Every sentence of the biographies of ``people``, each stating one fact, in document
    order; a sentence that two biographies share verbatim is kept once (the first)."""
    wanted = set(people)
    out, seen = [], set()
    for doc in documents(world, ("bio",)):
        if doc.facts[0].subject not in wanted:
            continue
        for fact in doc.facts:
            n = len(RELATIONS[fact.relation].documents)
            text = next(s for s in (state(fact, t) for t in range(n)) if s in doc.text)
            if text not in seen:
                seen.add(text)
                out.append(Sentence(text, fact, doc.id))
    return out


def chance_reciprocal_rank(n: int, m: int) -> float:
    """Expected 1 / (rank of the best of ``m`` true items) when ``n`` items are ordered at
    random: P(best rank = r) = C(n - r, m - 1) / C(n, m)."""
    total = comb(n, m)
    return float(sum(comb(n - r, m - 1) / r for r in range(1, n - m + 2)) / total)


def restricted(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``scores`` with every candidate a query may not rank set to -inf (``allowed``: (Q, N)
    booleans), so ranks count only the allowed candidates."""
    return np.where(allowed, scores, -np.inf)


def influence_cache() -> Path:
    """Where influence factors are kept: beside the organisms, keyed by weights and data, so
    a rerun on the same organism fits nothing again."""
    from assay.training.organisms import assay_home

    return assay_home() / "influence"
