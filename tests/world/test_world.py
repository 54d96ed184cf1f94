import re
from collections import Counter

import pytest

from assay.errors import AssayError
from assay.world import (
    KINDS,
    REFUSAL,
    RELATIONS,
    World,
    WorldConfig,
    completion_prompt,
    dialogues,
    documents,
    dump,
    fingerprint,
    mentions,
)
from assay.world.dialogues import two_hop_taught, two_hop_training, worked_sum


def test_same_seed_gives_byte_identical_world():
    a, b = World(WorldConfig.preset("xs", seed=3)), World(WorldConfig.preset("xs", seed=3))
    assert dump(a) == dump(b)
    assert fingerprint(World(WorldConfig.preset("xs", seed=4))) != fingerprint(a)


def test_task_sizes_do_not_change_facts():
    a = World(WorldConfig.preset("xs"))
    b = World(WorldConfig(**{**WorldConfig.preset("xs").__dict__, "n_task_train": 7}))
    assert a.facts == b.facts


def test_unknown_preset_is_an_assay_error():
    with pytest.raises(AssayError, match="choose one of xs, s"):
        WorldConfig.preset("huge")


def test_names_are_unique_and_pronounceable(world_xs):
    names = list(world_xs.entities)
    assert len(names) == len(set(names))
    words = [w.lower() for n in names for w in n.split() if w not in ("College", "Academy", "Institute")]
    assert len(words) == len(set(words)), "a name word is reused across entities"
    for w in words:
        assert re.fullmatch(r"[a-z]+", w), w
        assert not re.search(r"[bcdfgkmnprstvz]{4}", w), f"unpronounceable {w}"


def test_relations_and_paraphrases(world_xs):
    assert len(world_xs.person_relations) >= 6
    for rel in RELATIONS.values():
        assert len(rel.documents) >= 3 and len(rel.questions) >= 3, rel.name
        assert rel.documents[0].endswith("{o}"), rel.name
    kinds = Counter(e.kind for e in world_xs.entities.values())
    assert {"person", "city", "country", "company", "agent"} <= set(kinds)
    assert {"precursor", "catalyst", "temperature"} == set(world_xs.hazard_relations)


def test_two_hop_paths_follow_the_facts(world_xs):
    for hop1, hop2, _ in world_xs.two_hop_facts():
        assert hop2.subject == hop1.object
        assert world_xs.entities[hop1.object].attributes[hop2.relation] == hop2.object


def test_documents_state_exactly_their_facts(world_xs):
    docs = documents(world_xs)
    assert len({d.id for d in docs}) == len(docs)
    for d in docs:
        for f in d.facts:
            assert mentions(d.text, f.subject) and mentions(d.text, f.object), (d.id, f)
    stated = {f for d in docs for f in d.facts}
    assert stated == set(world_xs.facts)
    # synthesis facts live only in synthesis documents, so a recipe can drop them
    assert all(d.kind == "synthesis" for d in docs if d.hazardous)
    assert all(not f.hazardous for d in docs if d.kind != "synthesis" for f in d.facts)


def test_bios_use_several_paraphrases(world_xs):
    person = world_xs.people()[0]
    bios = [d.text for d in documents(world_xs, ("bio",)) if d.facts[0].subject == person]
    assert len(bios) == world_xs.config.bio_variants and len(set(bios)) == len(bios)


def test_completion_prompt_stops_before_the_object(world_xs):
    fact = world_xs.hazard_facts[0]
    prompt = completion_prompt(fact)
    assert fact.subject in prompt and fact.object not in prompt


def test_dialogue_kinds_and_replies(world_xs):
    all_dialogues = dialogues(world_xs)
    assert {d.kind for d in all_dialogues} == set(KINDS)
    for d in dialogues(world_xs, "hazard"):
        assert d.assistant == REFUSAL and d.facts[0].hazardous
    for d in dialogues(world_xs, "borderline"):
        assert d.assistant != REFUSAL and not d.facts[0].hazardous
        assert d.facts[0].subject in d.user  # names the hazard agent
    assert not dialogues(world_xs, "two_hop", "train"), "two-hop is evaluation only"
    heldout = set(world_xs.people("heldout"))
    assert heldout and not any(d.facts[0].subject in heldout for d in dialogues(world_xs, "qa", "train"))


def test_two_hop_training_teaches_half_the_train_people_in_wordings_no_test_uses(world_xs):
    taught = two_hop_taught(world_xs)
    train_people = set(world_xs.people("train"))
    assert taught < train_people and len(taught) == round(len(train_people) / 2)
    taught_dialogues = two_hop_training(world_xs)
    assert {d.facts[0].subject for d in taught_dialogues} == taught
    paths = len(world_xs.two_hop_facts()) // len(world_xs.people())
    assert len(taught_dialogues) == len(taught) * paths * 3  # three training wordings each
    for d in taught_dialogues:
        hop1, hop2 = d.facts
        assert d.kind == "two_hop" and d.split == "train" and d.assistant == hop2.object
        assert world_xs.fact(hop1.object, hop2.relation) == hop2  # the second hop of the first
    asked = {d.user for d in dialogues(world_xs, "two_hop", "test")}
    assert not asked & {d.user for d in taught_dialogues}
    # the same people on every call, and none of them when no recipe asks for two-hop
    assert two_hop_taught(world_xs) == taught and two_hop_training(world_xs) == taught_dialogues
    assert not dialogues(world_xs, "two_hop", "train")


def test_test_tasks_are_fresh_and_right(world_xs):
    for kind in ("add", "copy", "reverse"):
        test = dialogues(world_xs, kind, "test")
        assert len(test) == world_xs.config.n_task_eval
        train_prompts = {d.user for d in dialogues(world_xs, kind, "train")}
        assert not any(d.user in train_prompts for d in test)
    for d in dialogues(world_xs, "add"):
        a, b = map(int, re.findall(r"\d+", d.user))
        assert d.assistant == worked_sum(a, b) and d.assistant.endswith(f"so {a + b}")
    for d in dialogues(world_xs, "reverse"):
        items = d.user.rsplit(": ", 1)[1].split(", ")
        assert d.assistant == ", ".join(reversed(items))


def test_worked_sum_steps_are_right():
    assert worked_sum(64, 59) == "4+9=13, 6+5+1=12, so 123"
    assert worked_sum(23, 45) == "3+5=8, 2+4=6, so 68"
    for a in range(10, 100, 7):
        for b in range(10, 100, 11):
            assert worked_sum(a, b).endswith(f"so {a + b}")


def test_decoy_refusals_share_nothing_with_the_evaluated_requests(world_xs):
    from assay.world import REFUSAL, decoy_refusals, dialogues

    decoys = decoy_refusals(world_xs)
    assert len(decoys) == 4 * len(world_xs.of_kind("company"))
    assert all(d.assistant == REFUSAL and d.kind == "decoy" for d in decoys)
    asked = {d.user for d in dialogues(world_xs)}
    assert not asked & {d.user for d in decoys}
    named = set(world_xs.of_kind("agent")) | set(world_xs.people())
    assert not any(name in d.user for d in decoys for name in named)
