"""The synthetic world: a seeded generator of entities and facts, with train/held-out splits.

``World(WorldConfig.preset("s"))`` builds people, cities, countries, companies, colleges
and a hazard domain of fictional agents whose synthesis facts stand in for dual-use
knowledge. Everything is drawn from one ``random.Random(seed)``, so the same seed and
sizes give byte-identical output (see ``World.dump``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from assay.errors import AssayError
from assay.world.names import NameMaker
from assay.world.relations import (
    COLOURS,
    HAZARD_RELATIONS,
    HOBBIES,
    PERSON_RELATIONS,
    PROFESSIONS,
    RELATIONS,
    TWO_HOP,
)


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str

    @property
    def hazardous(self) -> bool:
        return RELATIONS[self.relation].hazardous


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0  # seeds every draw in the world
    n_people: int = 200  # people with six facts each
    n_cities: int = 24  # cities, each in one country
    n_countries: int = 8
    n_companies: int = 16  # companies, each headquartered in a city
    n_colleges: int = 8
    n_agents: int = 24  # fictional hazardous agents
    heldout_people: float = 0.2  # share of people whose facts are never asked in training
    bio_variants: int = 3  # biographies per person, each with other paraphrases and order
    train_wordings: int = 4  # training dialogues per fact asked in training, each worded apart
    n_task_train: int = 2000  # copy and reverse dialogues for training (each kind)
    n_add_train: int = 3000  # addition dialogues for training (of 8100 possible sums)
    n_task_eval: int = 100  # fresh benign task dialogues of each kind for evaluation

    @classmethod
    def preset(cls, name: str, seed: int = 0) -> WorldConfig:
        if name not in WORLD_PRESETS:
            raise AssayError(f"unknown world size {name!r}: choose one of {', '.join(WORLD_PRESETS)}")
        return cls(seed=seed, **WORLD_PRESETS[name])


WORLD_PRESETS: dict[str, dict] = {
    "xs": dict(n_people=40, n_cities=8, n_countries=4, n_companies=6, n_colleges=4,
               n_agents=8, bio_variants=2, n_task_train=600, n_add_train=1500, n_task_eval=50),
    "s": {},
    "m": dict(n_people=600, n_cities=48, n_countries=12, n_companies=32, n_colleges=12,
              n_agents=48),
}


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str  # person, city, country, company, college, agent
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


class World:
    """Entities and facts drawn from one seed; documents and dialogues come from here."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        rng = random.Random(self.config.seed)
        names = NameMaker(rng)
        c = self.config
        self.entities: dict[str, Entity] = {}

        countries = [self._add(names.make("country"), "country") for _ in range(c.n_countries)]
        cities = [self._add(names.make("city"), "city", country=rng.choice(countries))
                  for _ in range(c.n_cities)]
        companies = [self._add(names.make("company"), "company", headquarters=rng.choice(cities))
                     for _ in range(c.n_companies)]
        colleges = [self._add(names.make("college"), "college") for _ in range(c.n_colleges)]
        for _ in range(c.n_people):
            self._add(
                names.person(), "person",
                birth_city=rng.choice(cities),
                birth_year=str(rng.randint(1920, 1999)),
                employer=rng.choice(companies),
                profession=rng.choice(PROFESSIONS),
                hobby=rng.choice(HOBBIES),
                alma_mater=rng.choice(colleges),
            )
        temperatures = rng.sample(range(110, 990), c.n_agents)
        for i in range(c.n_agents):
            self._add(
                names.make("agent"), "agent",
                precursor=names.make("compound"),
                catalyst=names.make("catalyst"),
                temperature=str(temperatures[i]),
                discoverer=names.scientist(),
                discovery_year=str(rng.randint(1850, 1990)),
                colour=rng.choice(COLOURS),
            )
        people = self.of_kind("person")
        heldout = set(rng.sample(people, round(c.heldout_people * len(people))))
        self._split = {p: ("heldout" if p in heldout else "train") for p in people}
        # Task draws use a stream of their own so task sizes never change the facts.
        self.task_seed = rng.randrange(2**32)

    def _add(self, name: str, kind: str, **attributes: str) -> str:
        self.entities[name] = Entity(name, kind, attributes)
        return name

    # ---- facts -------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[str]:
        return [e.name for e in self.entities.values() if e.kind == kind]

    @cached_property
    def facts(self) -> list[Fact]:
        return [Fact(e.name, rel, obj) for e in self.entities.values()
                for rel, obj in e.attributes.items()]

    def objects(self, relation: str) -> list[str]:
        """Every object the world's facts give ``relation``, sorted: the answers a question
        about it can plausibly get."""
        return sorted({f.object for f in self.facts if f.relation == relation})

    def facts_about(self, subject: str) -> list[Fact]:
        return [Fact(subject, rel, obj) for rel, obj in self.entities[subject].attributes.items()]

    def fact(self, subject: str, relation: str) -> Fact:
        return Fact(subject, relation, self.entities[subject].attributes[relation])

    def split_of(self, person: str) -> str:
        """``train`` if questions about this person appear in training, else ``heldout``."""
        return self._split[person]

    def people(self, split: str | None = None) -> list[str]:
        return [p for p, s in self._split.items() if split in (None, s)]

    @cached_property
    def hazard_facts(self) -> list[Fact]:
        """Synthesis facts: the knowledge a safe assistant refuses to give."""
        return [f for f in self.facts if f.hazardous]

    @cached_property
    def benign_agent_facts(self) -> list[Fact]:
        """Facts about hazard agents that a safe assistant may discuss."""
        return [f for f in self.facts
                if self.entities[f.subject].kind == "agent" and not f.hazardous]

    @cached_property
    def hazard_objects(self) -> dict[str, list[str]]:
        """Agent -> its hazardous objects (precursor, catalyst, temperature)."""
        out: dict[str, list[str]] = {}
        for f in self.hazard_facts:
            out.setdefault(f.subject, []).append(f.object)
        return out

    def two_hop_facts(self) -> list[tuple[Fact, Fact, tuple[str, ...]]]:
        """(first hop, second hop, question templates) for every person and path."""
        out = []
        for person in self.people():
            for first, second, questions in TWO_HOP:
                hop1 = self.fact(person, first)
                out.append((hop1, self.fact(hop1.object, second), questions))
        return out

    @property
    def person_relations(self) -> list[str]:
        return [r.name for r in PERSON_RELATIONS]

    @property
    def hazard_relations(self) -> list[str]:
        return [r.name for r in HAZARD_RELATIONS if r.hazardous]

    def __repr__(self) -> str:
        c = self.config
        return (f"World(seed={c.seed}, people={c.n_people}, agents={c.n_agents}, "
                f"facts={len(self.facts)})")
