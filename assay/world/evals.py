"""Multiple-choice evaluations drawn from the world's facts, with exact answers.

An `MCItem` asks one fact with one held-out question wording (`assay.world.phrasing`:
a wording no training text contains) and offers the true object among distractors of
the same relation (other people's birth cities for a birth city, ...). Items carry the
subject and template they share with other items, because items that share either are
correlated, which is what clustered standard errors are for.

``EVALS`` names the evaluations `assay export lm-eval` and the studies use:

- ``facts``: every person fact, asked with every held-out wording (one per question
  template).
- ``facts-train`` / ``facts-heldout``: the same, for people whose questions were or were
  not in training (their facts are in the documents either way).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from assay.errors import AssayError
from assay.world.phrasing import question_wordings
from assay.world.world import World

__all__ = ["EVALS", "MCItem", "multiple_choice", "world_eval"]


@dataclass(frozen=True)
class MCItem:
    id: str
    question: str                # the question alone, without options or answer cue
    choices: tuple[str, ...]     # the options, the answer among them
    answer: int                  # index of the correct option in ``choices``
    subject: str                 # the entity asked about
    relation: str
    template: int                # which held-out wording of the relation asks it

    @property
    def template_id(self) -> str:
        return f"{self.relation}/{self.template}"


def multiple_choice(world: World, people: list[str] | None = None,
                    relations: list[str] | None = None, templates: list[int] | None = None,
                    n_choices: int = 4, seed: int = 0) -> list[MCItem]:
    """One item per (person, relation, held-out wording); distractors and the answer's
    position drawn from ``seed``, so the same arguments give the same items. ``templates``
    picks wordings by index into ``question_wordings(relation, "test")``."""
    people = world.people() if people is None else people
    relations = world.person_relations if relations is None else relations
    unknown = [r for r in relations if r not in world.person_relations]
    if unknown:
        raise AssayError(f"unknown person relation {unknown[0]!r}: choose from "
                         f"{', '.join(world.person_relations)}")
    if n_choices < 2:
        raise AssayError(f"n_choices must be at least 2, got {n_choices}")
    rng = random.Random(seed)
    objects = {r: sorted({f.object for f in world.facts if f.relation == r}) for r in relations}
    items = []
    for person in people:
        for rel in relations:
            truth = world.fact(person, rel).object
            pool = [o for o in objects[rel] if o != truth]
            if len(pool) < n_choices - 1:
                raise AssayError(f"relation {rel!r} has {len(pool) + 1} objects, too few for "
                                 f"{n_choices} choices; lower n_choices")
            questions = question_wordings(rel, "test")
            for t in (range(len(questions)) if templates is None else templates):
                options = rng.sample(pool, n_choices - 1)
                answer = rng.randrange(n_choices)
                options.insert(answer, truth)
                items.append(MCItem(
                    id=f"{person}|{rel}|{t}".replace(" ", "_"),
                    question=questions[t].format(s=person), choices=tuple(options),
                    answer=answer, subject=person, relation=rel, template=t))
    return items


EVALS: dict[str, Callable[[World], list[MCItem]]] = {
    "facts": lambda w: multiple_choice(w),
    "facts-train": lambda w: multiple_choice(w, people=w.people("train")),
    "facts-heldout": lambda w: multiple_choice(w, people=w.people("heldout")),
}


def world_eval(world: World, name: str) -> list[MCItem]:
    """The items of evaluation ``name`` (one of ``EVALS``) in ``world``."""
    if name not in EVALS:
        raise AssayError(f"unknown evaluation {name!r}: choose one of {', '.join(EVALS)}")
    return EVALS[name](world)
