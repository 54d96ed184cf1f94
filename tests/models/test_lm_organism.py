"""The wrapper on a trained organism: scores prefer true facts, chat formatting matches."""

import pytest

from assay.models import load
from assay.training.recipes import RECIPES
from assay.world import World, dialogues


@pytest.fixture(scope="module")
def xs(xs_organism):
    folder, _ = xs_organism
    return load(f"hf:{folder}"), World(RECIPES["xs"].world)


def test_scores_prefer_the_true_object(xs):
    lm, world = xs
    asked = [d for d in dialogues(world, "qa", "test")
             if world.split_of(d.facts[0].subject) == "train"][:60]
    rivals = []
    for d in asked:
        fact = d.facts[0]
        rivals.append(next(f.object for f in world.facts
                           if f.relation == fact.relation and f.object != fact.object))
    true = lm.score([d.prompt for d in asked], [d.assistant for d in asked])
    false = lm.score([d.prompt for d in asked], rivals)
    wins = sum(t.logprob > f.logprob for t, f in zip(true, false))
    assert wins / len(asked) >= 0.9, wins
    assert sum(t.greedy for t in true) / len(asked) >= 0.8


def test_chat_generation_uses_the_organism_template(xs):
    lm, world = xs
    d = dialogues(world, "hazard", "test")[0]
    assert lm.chat_prompt(d.user) == d.prompt
    assert lm.generate([d.user], chat=True, max_new_tokens=12) == \
        lm.generate([d.prompt], max_new_tokens=12)


def test_sites_on_the_organism(xs):
    lm, world = xs
    with lm.hooks(read=["blocks.1.resid_post", "final"]) as cache:
        lm.score(["The city of"], [" x"])
    assert cache["blocks.1.resid_post"].shape[-1] == lm.d_model == 64
    assert len(lm.sites) == 2 + 4 * lm.n_layers
