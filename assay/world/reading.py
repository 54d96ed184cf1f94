"""Reading: questions answered from a passage about people no other text names.

A *stranger* is an invented person who is not in the world: a name no entity of the world
shares a word with, and a birth city, birth year, employer, profession and hobby drawn from
the world's own values. A passage has a paragraph for each of one or more strangers, each
stating three of their facts; a question asks one stated fact of one of them. Since nothing
else names a stranger, the answer can only come from the passage: what these items measure
is reading, not recall.

Three answer formats ask the same kind of question:

- ``chat``: the passage and the question as a user turn, the answer as the reply;
- ``qa``: a document ``<passage>\\nQuestion: ...\\nAnswer: <answer>``;
- ``mc``: the same with four lettered options, answered by the letter.

and a fourth kind of request, ``subject`` (chat only), asks who a one-paragraph document is
about. Training items (split ``train``) use training question wordings and one set of
strangers; held-out items (``test``) use held-out wordings (`assay.world.phrasing`) and
strangers of their own, so no held-out question or name is in any training text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from assay.errors import AssayError
from assay.world.chat import render_dialogue, render_prompt
from assay.world.checks import mentions, normalize
from assay.world.names import NameMaker
from assay.world.phrasing import question_wordings, wordings
from assay.world.relations import RELATIONS
from assay.world.world import World

__all__ = ["FORMATS", "ReadingItem", "reading_items", "strangers"]

FORMATS = ("chat", "qa", "mc")
FIELDS = ("birth_city", "birth_year", "employer", "profession", "hobby")
LETTERS = "ABCD"
SUBJECT_CORES = ("Who is this document about?", "Name the person this text describes.",
                 "Whose profile is this?")
_N_STRANGERS = {"test": 400, "train": 6000}


@dataclass(frozen=True)
class ReadingItem:
    id: str
    kind: str      # field or subject
    format: str    # chat, qa or mc
    passage: str
    question: str
    answer: str    # what a correct reply contains (the letter, for mc)
    split: str

    @property
    def user(self) -> str:
        """The user turn of a chat item."""
        return f"Document:\n{self.passage}\n\n{self.question}"

    @property
    def prompt(self) -> str:
        """What the model reads before it answers."""
        if self.format == "chat":
            return render_prompt(self.user)
        return f"{self.passage}\nQuestion: {self.question}\nAnswer:"

    @property
    def text(self) -> str:
        """The whole item as training text."""
        if self.format == "chat":
            return render_dialogue(self.user, self.answer)
        return f"{self.prompt} {self.answer}"

    def correct(self, completion: str) -> bool:
        """Whether ``completion`` (what follows the prompt) gives the answer."""
        if self.format == "mc":
            return normalize(completion)[:1] == self.answer.lower()
        return mentions(completion, self.answer)


@lru_cache(maxsize=8)
def strangers(world: World) -> dict[str, tuple[tuple[str, dict[str, str]], ...]]:
    """Invented people per split (``train``, ``test``): (name, facts) pairs. No word of a
    stranger's name is a word of any world entity's name or of the other split's names."""
    rng = random.Random(f"strangers-{world.config.seed}")
    maker = NameMaker(rng)
    maker._words.update(w.lower() for name in world.entities for w in name.replace(".", "").split())
    values = {rel: sorted({world.fact(p, rel).object for p in world.people()}) for rel in FIELDS}
    out = {}
    for split in ("test", "train"):  # test first, so its names do not depend on train's count
        out[split] = tuple((maker.person(), {rel: rng.choice(values[rel]) for rel in FIELDS})
                           for _ in range(_N_STRANGERS[split]))
    return out


def _sentence(template: str, subject: str, obj: str) -> str:
    text = template.format(s=subject, o=obj)
    return text if text.endswith(".") else text + "."


def _paragraph(rng: random.Random, name: str, facts: dict[str, str], asked: str | None = None,
               k: int = 3) -> str:
    """``k`` of the stranger's facts in random order, the ``asked`` one among them."""
    rels = rng.sample([r for r in FIELDS if r != asked], k - (asked is not None))
    rels = rng.sample(rels + ([asked] if asked else []), k)
    return " ".join(_sentence(rng.choice(RELATIONS[rel].documents), name, facts[rel])
                    for rel in rels)


def reading_items(world: World, split: str, n: int, seed: int = 0, paragraphs: tuple[int, int] = (1, 2),
                  formats: tuple[str, ...] = FORMATS, subject_share: float = 0.15
                  ) -> list[ReadingItem]:
    """``n`` reading items of ``split``: passages of ``paragraphs`` (min, max) strangers,
    formats cycling through ``formats``, about ``subject_share`` of the chat items asking who
    a one-paragraph document is about."""
    if split not in ("train", "test"):
        raise AssayError(f"split must be 'train' or 'test', not {split!r}")
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise AssayError(f"reading formats must be among {', '.join(FORMATS)}, not {formats}")
    pool = strangers(world)[split]
    values = {rel: sorted({facts[rel] for _, facts in pool}) for rel in FIELDS}
    subject_cores = wordings(SUBJECT_CORES, split, closers=False)
    rng = random.Random(f"reading-{world.config.seed}-{split}-{seed}-{paragraphs}")
    out = []
    for i in range(n):
        fmt = formats[i % len(formats)]
        if fmt == "chat" and rng.random() < subject_share:
            name, facts = rng.choice(pool)
            out.append(ReadingItem(f"reading-{split}-{i}", "subject", fmt,
                                   _paragraph(rng, name, facts), rng.choice(subject_cores), name,
                                   split))
            continue
        people = rng.sample(pool, rng.randint(*paragraphs))
        target, rel = rng.randrange(len(people)), rng.choice(FIELDS)
        passage = "\n".join(_paragraph(rng, name, facts, rel if j == target else None)
                             for j, (name, facts) in enumerate(people))
        name, facts = people[target]
        question = rng.choice(question_wordings(rel, split)).format(s=name)
        answer = facts[rel]
        if fmt == "mc":
            options = [answer] + rng.sample([v for v in values[rel] if v != answer], 3)
            rng.shuffle(options)
            question += "".join(f"\n{LETTERS[k]}) {v}" for k, v in enumerate(options))
            answer = LETTERS[options.index(answer)]
        out.append(ReadingItem(f"reading-{split}-{i}", "field", fmt, passage, question, answer,
                               split))
    return out
