"""Activation patching, causal tracing, steering and probes on the xs organism: the methods'
own sanity checks (a clean run patched into itself recovers 100%) and measured effects."""

import numpy as np
import pytest
import torch

from assay.errors import AssayError
from assay.methods.patching import (
    GROUPS,
    edited_choice_logprobs,
    group_positions,
    grouped,
    locate_subject,
    noise_scale,
    patch,
    read_positions,
    trace,
)
from assay.methods.probes import Probe, control_labels
from assay.methods.steering import DiffMeans, ablated, added, random_direction, residual_sites
from assay.world import dialogues, is_refusal, question_wordings, render_prompt


@pytest.fixture(scope="module")
def xs_lm(assay_home, xs_organism):
    from assay.models import load

    return load(f"hf:{xs_organism[0]}")


@pytest.fixture(scope="module")
def fact_prompt(world_xs):
    d = next(d for d in dialogues(world_xs, "qa", "test") if d.facts[0].relation == "profession"
             and world_xs.split_of(d.facts[0].subject) == "train")
    return d.prompt, d.facts[0]


def test_locate_subject_finds_the_subject_tokens(xs_lm, fact_prompt):
    prompt, fact = fact_prompt
    ids, positions = locate_subject(xs_lm, prompt, fact.subject)
    assert ids == xs_lm.encode([prompt])[0]
    assert xs_lm.tokenizer.decode(ids[positions[0]:positions[-1] + 1]).strip() == fact.subject
    with pytest.raises(AssayError, match="does not occur"):
        locate_subject(xs_lm, prompt, "Nobody Atall")


def test_patching_a_run_into_itself_changes_nothing_at_any_site(xs_lm, fact_prompt):
    prompt, _ = fact_prompt
    ids = torch.tensor(xs_lm.encode([prompt]))
    clean = xs_lm.forward(ids)[0, -1]
    every = list(range(ids.shape[1]))
    for site in xs_lm.sites:
        torch.testing.assert_close(patch(xs_lm, prompt, prompt, site, every), clean, rtol=0, atol=0)


def test_patching_the_last_block_everywhere_transplants_the_source_output(xs_lm, world_xs):
    prompts = [render_prompt(f"Where was {p} born?") for p in world_xs.people("train")]
    by_length = {}
    for p in prompts:  # two people whose names take as many tokens
        by_length.setdefault(len(xs_lm.encode([p])[0]), []).append(p)
    a, b = next(group for group in by_length.values() if len(group) >= 2)[:2]
    n = len(xs_lm.encode([a])[0])
    source = xs_lm.forward(torch.tensor(xs_lm.encode([a])))[0, -1]
    target = xs_lm.forward(torch.tensor(xs_lm.encode([b])))[0, -1]
    patched = patch(xs_lm, a, b, f"blocks.{xs_lm.n_layers - 1}.resid_post", range(n))
    torch.testing.assert_close(patched, source, rtol=1e-5, atol=1e-5)
    assert (patched - target).abs().max() > 0.1  # the two prompts' outputs did differ


def test_causal_trace_clean_into_clean_recovers_exactly_100_percent(xs_lm, fact_prompt):
    prompt, fact = fact_prompt
    tr = trace(xs_lm, prompt, fact.subject, fact.object, noise=0.0, samples=1)
    assert tr.p_clean > 0.3 and tr.p_corrupt == tr.p_clean
    np.testing.assert_array_equal(tr.restored, np.full_like(tr.restored, tr.p_clean))


def test_causal_trace_corrupts_and_the_last_state_restores_everything(xs_lm, fact_prompt):
    prompt, fact = fact_prompt
    noise = noise_scale(xs_lm, [prompt], 3.0)
    tr = trace(xs_lm, prompt, fact.subject, fact.object, noise=noise, samples=4, seed=1)
    assert tr.p_corrupt < 0.7 * tr.p_clean  # the noise on the subject hurts the answer
    k = tr.kinds.index("resid_post")
    last = len(tr.tokens) - 1
    # the answer's first token reads only the last position's final block output
    assert tr.restored[k, -1, last] == pytest.approx(tr.p_clean, rel=1e-5)
    # restoring a position before the subject restores nothing: it never saw the noise
    before = tr.subject[0] - 1
    np.testing.assert_allclose(tr.restored[:, :, before], tr.p_corrupt, rtol=1e-5)
    again = trace(xs_lm, prompt, fact.subject, fact.object, noise=noise, samples=4, seed=1)
    np.testing.assert_array_equal(tr.restored, again.restored)  # seeded: deterministic


def test_position_groups_partition_the_prompt(xs_lm, fact_prompt):
    prompt, fact = fact_prompt
    tr = trace(xs_lm, prompt, fact.subject, fact.object, noise=0.1, samples=1)
    groups = group_positions(tr)
    assert len(groups) == len(GROUPS)
    assert groups[2] == [tr.subject[-1]] and groups[-1] == [len(tr.tokens) - 1]
    flat = [t for g in groups for t in g]
    assert len(flat) == len(set(flat))  # no position in two groups
    assert grouped(tr).shape == (len(tr.kinds), xs_lm.n_layers, len(GROUPS))


def test_edited_choice_scores_match_pairwise_scoring_packed_or_padded(xs_lm, world_xs):
    prompts = [render_prompt(f"What is the profession of {p}?") for p in world_xs.people()[:3]]
    choices = ["teacher", "carpenter", "x"]
    ids = xs_lm.encode(prompts)
    cids = [xs_lm.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    plain = edited_choice_logprobs(xs_lm, ids, cids, batch_size=2)
    pairwise = np.array([[s.logprob for s in xs_lm.score([p] * 3, choices)] for p in prompts])
    np.testing.assert_allclose(plain, pairwise, atol=1e-4)
    deltas = np.random.default_rng(0).normal(size=(3, xs_lm.d_model))
    edit = ("blocks.0.resid_post", [2, 3, 4], deltas)
    packed = edited_choice_logprobs(xs_lm, ids, cids, *edit, batch_size=2)
    xs_lm._packs_options = False
    try:
        padded = edited_choice_logprobs(xs_lm, ids, cids, *edit, batch_size=4)
    finally:
        xs_lm._packs_options = None
    np.testing.assert_allclose(packed, padded, atol=1e-4)
    assert np.abs(packed - plain).max() > 0.1  # the edit moved the scores


def test_a_probe_beats_its_control_task_on_a_real_attribute(xs_lm, world_xs):
    """At the end of a question asking someone's birth city, a linear probe trained on half
    the people reads the city of people it never saw; the control task (a random label per
    person, the same frequencies) cannot transfer to new people and stays near chance."""
    people = world_xs.people("train")
    questions = question_wordings("birth_city", "test")
    prompts = [render_prompt(q.format(s=p)) for p in people for q in questions]
    who = np.repeat(people, len(questions))
    y = np.array([world_xs.entities[p].attributes["birth_city"] for p in who])
    ids = xs_lm.encode(prompts)
    X = read_positions(xs_lm, ids, [len(i) - 1 for i in ids], ["blocks.1.resid_post"])
    X = X["blocks.1.resid_post"]
    train = np.isin(who, people[: len(people) // 2])
    control = control_labels(who, y, seed=0)
    task = Probe("linear").fit(X[train], y[train]).score(X[~train], y[~train])
    ctrl = Probe("linear").fit(X[train], control[train]).score(X[~train], control[~train])
    # measured on xs, held-out wordings: 0.58 vs 0.20 (8 cities)
    assert task > 0.45
    assert task - ctrl > 0.25


def test_adding_nothing_is_bit_identical_and_ablation_removes_the_direction(xs_lm, fact_prompt):
    ids = torch.tensor(xs_lm.encode([fact_prompt[0]]))
    clean = xs_lm.forward(ids)
    with added(xs_lm, torch.zeros(xs_lm.d_model), "blocks.0.resid_post"):
        torch.testing.assert_close(xs_lm.forward(ids), clean, rtol=0, atol=0)
    d = random_direction(xs_lm.d_model, seed=3)
    assert float(d.norm()) == pytest.approx(1.0)
    assert float(random_direction(xs_lm.d_model, 3, norm=5.0).norm()) == pytest.approx(5.0)
    sites = residual_sites(xs_lm)
    with ablated(xs_lm, 7 * d), xs_lm.hooks(read=sites) as cache:
        xs_lm.forward(ids)
    for site in sites:
        assert float((cache[site] @ d).abs().max()) < 1e-5


def test_refusal_direction_steers_and_a_random_direction_does_nothing(xs_lm, world_xs):
    hazard = [d.prompt for d in dialogues(world_xs, "hazard", "test")]
    benign = [d.prompt for d in dialogues(world_xs, "borderline", "test")]
    with pytest.raises(AssayError, match="not fitted"):
        DiffMeans("blocks.0.resid_post").projections(xs_lm, hazard)
    dm = DiffMeans("blocks.0.resid_post").fit(xs_lm, hazard, benign)
    assert dm.projections(xs_lm, hazard).mean() > dm.projections(xs_lm, benign).mean()

    def refusals(prompts, steer) -> float:
        with steer:
            return float(np.mean([is_refusal(r) for r in xs_lm.generate(prompts, 12)]))

    rand = random_direction(xs_lm.d_model, seed=0)
    # measured on two draws of xs (two machines): ablation 1.00 -> ~0.5 refusals, addition
    # 0.00 -> 0.6 and 0.29 of benign refused; the random direction below moves neither
    assert refusals(hazard, ablated(xs_lm, dm.direction_)) < 0.8
    assert refusals(benign, added(xs_lm, dm.vector_, "blocks.0.resid_post")) > 0.15
    # the control: a random direction of the same norm does neither
    assert refusals(hazard, ablated(xs_lm, rand)) == 1.0
    assert refusals(benign, added(xs_lm, rand * dm.norm_, "blocks.0.resid_post")) == 0.0
