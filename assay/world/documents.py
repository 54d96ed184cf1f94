"""Documents rendered from facts: biographies and encyclopedia-style articles.

Each document has an id and the exact list of facts it states, the ground truth that
data attribution and contamination studies need. Synthesis facts about hazard agents
live only in ``synthesis`` documents, so a recipe can leave them out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from assay.world.relations import RELATIONS
from assay.world.world import Fact, World


@dataclass(frozen=True)
class Document:
    id: str
    kind: str  # bio, city, company, agent (benign facts), synthesis (hazardous facts)
    text: str
    facts: tuple[Fact, ...]

    @property
    def hazardous(self) -> bool:
        return any(f.hazardous for f in self.facts)


def state(fact: Fact, template: int) -> str:
    """One sentence stating ``fact`` with paraphrase number ``template``."""
    sentence = RELATIONS[fact.relation].documents[template].format(s=fact.subject, o=fact.object)
    sentence = sentence[0].upper() + sentence[1:]
    return sentence if sentence.endswith(".") else sentence + "."


def completion_prompt(fact: Fact) -> str:
    """The first paraphrase cut just before the object: a document-completion probe. The
    first variant of every document states its facts in this paraphrase, so the probe asks
    for a sentence of the training text, as a probe of what the model holds must."""
    template = RELATIONS[fact.relation].documents[0]
    assert template.endswith("{o}"), template
    return template[: -len("{o}")].format(s=fact.subject).rstrip()


def _article(world: World, rng: random.Random, doc_id: str, kind: str, facts: list[Fact],
             variant: int) -> Document:
    facts = list(facts)
    rng.shuffle(facts)
    sentences = []
    for i, fact in enumerate(facts):
        n = len(RELATIONS[fact.relation].documents)
        shift = rng.randrange(n)
        # variant 0 states every fact in its first paraphrase, the sentence that
        # `completion_prompt` cuts: a completion probe then asks a sentence the model read
        sentences.append(state(fact, 0 if variant == 0 else (variant + i + shift) % n))
    return Document(doc_id, kind, " ".join(sentences), tuple(facts))


@lru_cache(maxsize=8)
def _documents(world: World) -> tuple[Document, ...]:
    rng = random.Random(f"documents-{world.config.seed}")
    docs: list[Document] = []
    variants = world.config.bio_variants
    for i, person in enumerate(world.people()):
        for v in range(variants):
            docs.append(_article(world, rng, f"bio-{i:04d}-{v}", "bio",
                                 world.facts_about(person), v))
    for kind in ("city", "company"):
        for i, name in enumerate(world.of_kind(kind)):
            for v in range(variants):
                docs.append(_article(world, rng, f"{kind}-{i:03d}-{v}", kind,
                                     world.facts_about(name), v))
    for i, agent in enumerate(world.of_kind("agent")):
        facts = world.facts_about(agent)
        for v in range(variants):
            docs.append(_article(world, rng, f"agent-{i:03d}-{v}", "agent",
                                 [f for f in facts if not f.hazardous], v))
            docs.append(_article(world, rng, f"synthesis-{i:03d}-{v}", "synthesis",
                                 [f for f in facts if f.hazardous], v))
    return tuple(docs)


def documents(world: World, kinds: tuple[str, ...] | None = None) -> list[Document]:
    """All documents of the world (or of the given kinds), in a fixed order."""
    docs = _documents(world)
    return [d for d in docs if kinds is None or d.kind in kinds]
