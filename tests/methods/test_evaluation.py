"""Multiple-choice evaluation on xs: the fast scorer agrees with plain scoring, formats ask
the same question, clustered errors behave, membership detectors find trained text."""

import numpy as np
import pytest

from assay.errors import AssayError
from assay.methods.evaluation import Format, correct, format_grid, mean_se, paired_se, render, score_items
from assay.methods.membership import membership_scores
from assay.methods.stats import auroc
from assay.models.scoring import score_choices
from assay.world import documents
from assay.world.evals import multiple_choice, world_eval


@pytest.fixture(scope="module")
def xs_lm(assay_home, xs_organism):
    from assay.models import load

    return load(f"hf:{xs_organism[0]}")


@pytest.fixture(scope="module")
def items(world_xs):
    return multiple_choice(world_xs, people=world_xs.people()[:10], seed=0)


@pytest.mark.slow
def test_fast_scorer_matches_one_pair_at_a_time_scoring(xs_lm, items):
    prompts, choices = [], []
    for it, fmt in zip(items[:60], format_grid(60, seed=1) * 1):
        p, c, _ = render(it, fmt, xs_lm.chat_prompt)
        prompts.append(p)
        choices.append(c)
    fast = score_choices(xs_lm, prompts, choices, batch_size=7)
    slow = xs_lm.score([p for p, cs in zip(prompts, choices) for _ in cs],
                       [c for cs in choices for c in cs], batch_size=1)
    flat = np.concatenate(fast)
    assert any(len(xs_lm.tokenizer(c, add_special_tokens=False)["input_ids"]) > 2
               for cs in choices for c in cs)  # multi-token continuations are covered
    assert np.abs(flat - [s.logprob for s in slow]).max() < 1e-4
    # the batch a prompt lands in changes nothing
    again = score_choices(xs_lm, prompts[::-1], choices[::-1], batch_size=64)[::-1]
    assert np.abs(np.concatenate(again) - flat).max() < 1e-4


def test_every_format_asks_the_same_question_with_the_true_answer(items):
    item = items[0]
    seen = set()
    for fmt in format_grid(40, seed=0):
        prompt, conts, answer = render(item, fmt, chat_prompt=lambda u: f"<u>{u}</u>")
        assert item.question in prompt and len(conts) == len(item.choices)
        if fmt.options == "letter":
            assert all(item.choices[k] in prompt for k in range(len(item.choices)))
            label_pos = {c.strip(): prompt.index(f"{c.strip()}") for c in conts}
            assert label_pos  # labels appear in the prompt
            truth_line = [line for line in prompt.replace(" | ", "\n").split("\n")
                          if item.choices[item.answer] in line]
            assert truth_line and conts[answer].strip() in truth_line[0]
        else:
            assert conts[answer].strip() == item.choices[item.answer]
        seen.add((prompt, tuple(conts)))
    assert len(seen) == 40  # drawn formats all differ in what is scored
    # hidden options: the rotation changes only the order of the scored continuations
    p0, c0, a0 = render(item, Format(rotate=0), chat_prompt=str)
    p1, c1, a1 = render(item, Format(rotate=1), chat_prompt=str)
    assert p0 == p1 and c0[a0] == c1[a1] and c0 != c1
    with pytest.raises(AssayError, match="chat_prompt"):
        render(item, Format())


@pytest.mark.slow
def test_organism_knows_its_facts_in_its_own_format_and_is_order_invariant(xs_lm, items):
    native = correct(xs_lm, items)
    rotated = correct(xs_lm, items, Format(rotate=2))
    assert np.array_equal(native, rotated)
    # xs answers trained people's facts well above the 0.25 of chance (measured 0.6-0.7)
    assert native.mean() > 0.45
    scores, answers = score_items(xs_lm, items[:5])
    assert len(scores) == 5 and all(s.shape == (4,) for s in scores) and len(answers) == 5


def test_clustered_standard_errors():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(50), 10)
    # each cluster's items share one outcome: the design effect is the cluster size
    shared = np.repeat(rng.integers(0, 2, 50), 10).astype(float)
    assert mean_se(shared, clusters) / mean_se(shared) == pytest.approx(np.sqrt(10), rel=0.15)
    # independent items: clustering changes little
    indep = rng.integers(0, 2, 500).astype(float)
    assert mean_se(indep, clusters) / mean_se(indep) == pytest.approx(1.0, abs=0.2)
    # pairing removes what two systems share
    a = rng.normal(size=500)
    b = a + 0.05 + 0.1 * rng.normal(size=500)
    paired, unpaired = paired_se(a, b)
    assert paired < unpaired / 5
    with pytest.raises(AssayError, match="at least 2 clusters"):
        mean_se(indep, np.zeros(500))


def test_world_evals_are_seeded_and_refuse_unknown_names(world_xs):
    a, b = world_eval(world_xs, "facts"), world_eval(world_xs, "facts")
    assert a == b and len(a) == len(world_xs.people()) * 6 * 3
    assert all(it.choices[it.answer] == world_xs.fact(it.subject, it.relation).object for it in a)
    assert len({it.answer for it in a}) == 4  # the answer's position varies
    with pytest.raises(AssayError, match="unknown evaluation"):
        world_eval(world_xs, "nope")


@pytest.mark.slow
def test_membership_detectors_separate_trained_documents_from_unseen_text(xs_lm, world_xs):
    seen = [d.text for d in documents(world_xs)][:80]
    # the same kind of sentences about people and places that do not exist
    unseen = [t.replace(p, "Zorbel Quint") for t, p in
              zip(seen, [d.facts[0].subject for d in documents(world_xs)][:80])]
    scores = membership_scores(xs_lm, seen + unseen)
    labels = [True] * len(seen) + [False] * len(unseen)
    for name in ("loss", "min_k", "min_k_plus_plus"):
        est = auroc(scores[name], labels)
        assert est.ci_low > 0.6, (name, est)
    with pytest.raises(AssayError, match="unknown membership detector"):
        membership_scores(xs_lm, seen[:2], detectors=["nope"])
