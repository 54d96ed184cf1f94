"""How a user words a request, and which wordings training may use.

A wording is three parts: an opener, a core and a closer. The cores are a relation's
question templates (``Relation.questions``) or a benign task's templates; the openers and
closers are shared by every request. The grid of (opener ``i``, core ``j``, closer ``k``)
cells is split the same way in every world: a cell is held out when ``(i + j + k) % 3 ==
0``. Training dialogues use training cells only; every evaluation wording is a held-out
cell with a non-empty opener and, where the request has closers, a non-empty closer.

So an evaluation wording is a string no training text contains, while each of its parts,
and each pair of parts, is trained (the split is a Latin square over the parts). The
non-empty opener and closer keep an evaluation wording from sitting inside a longer
training wording. Benign tasks take no closer, since it would run into the text to copy.
"""

from __future__ import annotations

from functools import lru_cache

from assay.errors import AssayError
from assay.world.relations import RELATIONS

__all__ = ["CLOSERS", "OPENERS", "SPLITS", "heldout_cell", "question_wordings", "wordings"]

OPENERS = ("", "Please tell me: ", "Quick question: ", "Question: ", "Hi! ", "Say, ")
CLOSERS = ("", " Thanks.", " Please.")
SPLITS = ("train", "test")
_PERIOD = 3  # one cell in three is held out


def heldout_cell(i: int, j: int, k: int) -> bool:
    """Whether the (opener, core, closer) cell ``(i, j, k)`` is kept out of training."""
    return (i + j + k) % _PERIOD == 0


@lru_cache(maxsize=256)
def wordings(cores: tuple[str, ...], split: str, closers: bool = True) -> tuple[str, ...]:
    """Templates for the ``cores`` framed by openers and closers, for one split.

    ``train``: every training cell, core by core. ``test``: one held-out cell per core, in
    core order, so ``wordings(cores, "test")[j]`` asks core ``j`` in a frame training never
    puts it in.
    """
    if split not in SPLITS:
        raise AssayError(f"unknown wording split {split!r}: choose one of {', '.join(SPLITS)}")
    ends = CLOSERS if closers else ("",)
    if split == "train":
        return tuple(o + core + c for j, core in enumerate(cores)
                     for i, o in enumerate(OPENERS) for k, c in enumerate(ends)
                     if not heldout_cell(i, j, k))
    out = []
    for j, core in enumerate(cores):
        # Walk the non-empty openers from a core-dependent start, so cores differ in frame.
        for step in range(len(OPENERS) - 1):
            i = 1 + (j + step) % (len(OPENERS) - 1)
            k = next((k for k in range(len(ends)) if heldout_cell(i, j, k)
                      and (ends[k] or not closers)), None)
            if k is not None:
                out.append(OPENERS[i] + core + ends[k])
                break
    return tuple(out)


def question_wordings(relation: str, split: str) -> tuple[str, ...]:
    """``wordings`` of a relation's questions; ``{s}`` stands for the subject."""
    if relation not in RELATIONS:
        raise AssayError(f"unknown relation {relation!r}: choose from {', '.join(RELATIONS)}")
    return wordings(RELATIONS[relation].questions, split)
