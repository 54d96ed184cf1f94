"""Held-out evaluation: no request an evaluation asks is a string any training text holds."""

import pytest

from assay.errors import AssayError
from assay.training.data import SOURCES, evaluation_strings, leaked_strings
from assay.training.recipes import RECIPES
from assay.world import RELATIONS, World, dialogues, question_wordings, wordings
from assay.world.phrasing import CLOSERS, OPENERS, heldout_cell


def _origin(source: str) -> str:
    """The source a derived one is cut from: a filtered source holds some of its documents,
    a conditional one all of them behind a tag (tests/training/test_filtering.py), so neither
    can hold an evaluation string its origin does not."""
    for suffix in ("_filter", "_cond"):
        if suffix in source:
            return source.split(suffix)[0]
    return source


def _world_recipes():
    """One recipe per distinct (world, training sources): every world organism's data."""
    seen = {}
    for r in RECIPES.values():
        if r.world is not None:
            sources = tuple(sorted({_origin(name) for st in r.stages for name, _ in st.mixture}))
            seen.setdefault((r.world, sources), r.name)
    return sorted(seen.values())


@pytest.mark.parametrize("name", _world_recipes())
def test_no_evaluation_string_appears_in_any_training_text(name):
    recipe = RECIPES[name]
    world = World(recipe.world)
    sources = sorted({_origin(n) for st in recipe.stages for n, _ in st.mixture})
    asked = evaluation_strings(world)
    assert len(asked) > 900  # test dialogues and multiple-choice questions of every kind
    assert leaked_strings(world, sources, asked) == []
    # every source a study may fine-tune on, decoy refusals included, is clean too
    assert leaked_strings(world, sorted({_origin(n) for n in SOURCES}), asked) == []


def test_the_leak_check_finds_a_training_string(world_xs):
    trained = [d.user for d in dialogues(world_xs, ("qa", "hazard", "add"), "train")][::50]
    asked = evaluation_strings(world_xs)[:20] + trained
    assert leaked_strings(world_xs, ["qa", "hazard", "tasks"], asked) == trained


def test_held_out_wordings_are_new_combinations_of_trained_parts():
    for rel in RELATIONS.values():
        train, test = question_wordings(rel.name, "train"), question_wordings(rel.name, "test")
        assert len(test) == len(rel.questions) and not set(test) & set(train)
        for j, (core, asked) in enumerate(zip(rel.questions, test)):
            assert core in asked  # test wording j asks core j...
            opener, closer = asked.split(core)
            assert opener and closer  # ...in a frame with both parts non-empty
            i, k = OPENERS.index(opener), CLOSERS.index(closer)
            assert heldout_cell(i, j, k)
            # each pair of the three parts occurs in some training wording
            assert any(w.startswith(opener + core) for w in train)
            assert any(w.endswith(core + closer) for w in train)
            assert any(w.startswith(opener) and w.endswith(closer) for w in train)
            # and no training wording contains the whole evaluation wording
            assert not any(asked in w for w in train)


def test_task_wordings_are_held_out_without_closers():
    cores = ("Repeat after me: {x}", "Copy this exactly: {x}", "Say back: {x}")
    train, test = wordings(cores, "train", closers=False), wordings(cores, "test", closers=False)
    assert len(test) == 3 and not set(test) & set(train)
    # no closer follows the text to copy: every wording ends where its core does
    assert all(w.endswith("{x}") for w in train + test)
    assert len(train) + len(test) < len(cores) * len(OPENERS) * len(CLOSERS) / 2


def test_unknown_split_or_relation_is_an_assay_error():
    with pytest.raises(AssayError, match="choose one of train, test"):
        wordings(("a",), "dev")
    with pytest.raises(AssayError, match="unknown relation"):
        question_wordings("shoe_size", "test")


def test_trained_facts_get_their_number_of_wordings(world_xs):
    per_fact = {}
    for d in dialogues(world_xs, ("qa", "hazard", "borderline"), "train"):
        per_fact.setdefault(d.facts[0], set()).add(d.user)
    assert set(map(len, per_fact.values())) == {world_xs.config.train_wordings}
