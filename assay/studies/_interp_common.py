"""What the interpretability studies share: questions about people as token ids with the
positions to read (the subject's last token, the prompt's last token), invented people the
organism never saw, and person-level bootstrap resampling."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assay.methods.patching import locate_subject
from assay.world import World, question_wordings, render_prompt
from assay.world.names import NameMaker

POSITIONS = ("last subject", "last token")


@dataclass(frozen=True)
class Rows:
    """Chat questions about people: one row per (person, question template)."""

    ids: list[list[int]]           # prompt token ids
    people: np.ndarray             # (N,) the person each row is about
    templates: np.ndarray          # (N,) the question template's index (the context)
    relations: np.ndarray          # (N,) the relation each question asks
    positions: dict[str, np.ndarray]  # POSITIONS -> (N,) token position


def person_attributes(names: list[str]) -> list[str]:
    """``names`` if every one is a person relation of the world; a ValueError (which the
    study's config reports as a bad ``--set``) listing the valid ones otherwise."""
    from assay.world.relations import PERSON_RELATIONS

    valid = [r.name for r in PERSON_RELATIONS]
    bad = [a for a in names if a not in valid]
    if bad or not names:
        raise ValueError(f"unknown attribute {bad[0] if bad else '(none)'}: choose from "
                         f"{', '.join(valid)}")
    return names


def question_rows(lm, world: World, people: Sequence[str], relations: Sequence[str]) -> Rows:
    """Every held-out question wording of ``relations`` asked about every one of ``people``."""
    ids, who, ctx, rels, subj_last, last = [], [], [], [], [], []
    templates = [(rel, q) for rel in relations for q in question_wordings(rel, "test")]
    for person in people:
        for j, (rel, question) in enumerate(templates):
            row, subject = locate_subject(lm, render_prompt(question.format(s=person)), person)
            ids.append(row)
            who.append(person)
            ctx.append(j)
            rels.append(rel)
            subj_last.append(subject[-1])
            last.append(len(row) - 1)
    return Rows(ids, np.array(who), np.array(ctx), np.array(rels),
                {"last subject": np.array(subj_last), "last token": np.array(last)})


def fictional_people(world: World, n: int, seed: int) -> list[str]:
    """``n`` invented person names that share no word with any name in ``world``: people the
    organism was never taught anything about."""
    rng = random.Random(f"fictional-{seed}")
    names = NameMaker(rng)
    taken = {w.lower() for name in world.entities for w in name.split()}
    people: list[str] = []
    while len(people) < n:
        name = names.person()
        if not any(w.lower() in taken for w in name.split()):
            people.append(name)  # NameMaker never repeats a word, so never a whole name
    return people


def sites_of(lm) -> list[str]:
    """The residual stream's sites in order: embed, then every block's output."""
    return ["embed", *(f"blocks.{i}.resid_post" for i in range(lm.n_layers))]


def site_label(site: str) -> str:
    return "embed" if site == "embed" else f"L{site.split('.')[1]}"
