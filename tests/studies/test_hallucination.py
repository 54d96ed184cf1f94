"""hallucination-singletons: the planted variant's mention counts, the probe's reading of scores,
and a real run on xs."""

import numpy as np
import pytest

from assay.studies import hallucination as h
from assay.world import Fact, World, WorldConfig
from assay.world.documents import state
from assay.world.relations import RELATIONS


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig.preset("xs"))


def _recount(fact: Fact, sentences: list[str]) -> int:
    forms = {state(fact, k) for k in range(len(RELATIONS[fact.relation].documents))}
    return sum(s in forms for s in sentences)


def test_planted_counts_are_the_sentences_that_state_each_fact(world):
    cfg = h.Config(people=30, helpers=10, mentions=400)
    v = h.plant(world, cfg, seed=3)
    assert len(v.facts) == 30 * len(cfg.relations)
    recount = np.array([_recount(f, v.sentences) for f in v.facts])
    assert np.array_equal(recount, v.count)
    # the helpers' mentions are the rest of the sample
    assert len(v.sentences) == 400 > v.count.sum()
    singletons = int((recount == 1).sum())
    assert singletons > 0
    assert v.singleton_rate == pytest.approx(singletons / recount.sum())
    assert v.weight.sum() == pytest.approx(1.0)
    # a fact's first mention is the sentence the probe cuts
    for f, c in zip(v.facts, v.count):
        if c:
            assert state(f, 0) in v.sentences
    # "unknown" is said only of helpers' facts that no sentence states
    asked = {f.subject for f in v.facts}
    said = [s for s in v.unknown]
    assert said and not any(name in s for s in said for name in asked)
    assert all(f" {h.UNKNOWN}" in s for s in said)
    assert sum(s.endswith(f" {h.UNKNOWN}.") for s in said) >= len(said) / 4  # the probed form
    # no planted name shares a word with the world's names
    words = {w.lower() for name in world.entities for w in name.replace(".", "").split()}
    assert not words & {w.lower() for f in v.facts for w in f.subject.split()}


def test_same_seed_same_variant_and_objects_come_from_the_world(world):
    cfg = h.Config(people=20, helpers=0, mentions=200)
    a, b = h.plant(world, cfg, seed=1), h.plant(world, cfg, seed=1)
    assert a.sentences == b.sentences and np.array_equal(a.count, b.count)
    assert a.sentences != h.plant(world, cfg, seed=2).sentences
    assert all(f.object in world.objects(f.relation) for f in a.facts)


def test_singleton_rate_estimates_the_mass_never_mentioned(world):
    # Good-Turing: the share of mentions that are singletons estimates the query mass of
    # facts with no mention; on draws this size the two agree within a few points
    gaps = [h.plant(world, h.Config(people=300, helpers=0, mentions=3000), seed=s)
            for s in range(3)]
    for v in gaps:
        assert 0.05 < v.unseen_mass < 0.4
        assert abs(v.singleton_rate - v.unseen_mass) < 0.04


def test_bins_split_unseen_facts_by_whether_the_person_is_seen(world):
    v = h.Variant(facts=[Fact(f"P{i}", r, "x") for i in range(3) for r in ("birth_city", "employer")],
                  weight=np.full(6, 1 / 6), count=np.array([0, 0, 0, 1, 2, 9]),
                  sentences=[], unknown=[])
    labels = [h.BINS[b][0] for b in h._bins(v)]
    assert labels == ["0, person unseen", "0, person unseen", "0, person seen", "1", "2", "8+"]


class _Scores:
    """Log-probabilities by prompt and completion; "unknown" and unlisted objects get fixed ones."""

    def __init__(self, truth, unknown):
        self.truth, self.unknown = truth, unknown

    def score(self, prompts, conts, batch_size=512):
        class S:
            def __init__(self, logprob):
                self.logprob = logprob
        out = []
        for p, c in zip(prompts, conts):
            obj = c.strip().rstrip(".")
            out.append(S(self.truth.get(p, {}).get(obj, self.unknown if obj == h.UNKNOWN
                                                   else -9.0)))
        return out


def test_probe_answers_with_the_likeliest_object_and_abstains_on_unknown(world):
    from assay.world import completion_prompt

    pools = {"birth_city": world.objects("birth_city")}
    f_right = Fact("Ana Bel", "birth_city", pools["birth_city"][0])
    f_wrong = Fact("Cor Dun", "birth_city", pools["birth_city"][1])
    lp = {completion_prompt(f_right): {pools["birth_city"][0]: np.log(0.6)},
          completion_prompt(f_wrong): {pools["birth_city"][2]: np.log(0.1)}}
    read = h.probe(_Scores(lp, unknown=-2.0), [f_right, f_wrong], pools)
    assert list(read["right"]) == [True, False]
    k = len(pools["birth_city"])
    assert read["confidence"][0] == pytest.approx(0.6 / (0.6 + (k - 1) * np.exp(-9.0)))
    # "unknown" (probability e^-2 = 0.135) outranks the second fact's best object (0.1) only
    assert list(read["abstains"]) == [False, True]


@pytest.mark.slow
def test_hallucination_on_xs_errs_on_rare_facts_and_abstention_trades_coverage(run_xs):
    record = run_xs("hallucination-singletons", {"people": "80", "helpers": "80",
                                                 "mentions": "1800", "steps": "300",
                                                 "n_boot": "300"})
    r = record.result
    m = r.metrics
    # measured on xs (400 facts, one run of 300 steps per model): facts mentioned 8+ times
    # are all known, facts mentioned once missed 0.64 of the time (error_fall 0.64 [0.55,
    # 0.74]), and the error on the query distribution, 0.26, sits above the singleton rate,
    # 0.10 (floor_excess 0.16 [0.07, 0.34])
    assert r.control.metrics["error_many"].value < 0.15
    assert m["error_fall"].ci_low > 0.2
    assert m["floor_excess"].value > 0.05
    assert m["error@0, person seen"].value > 0.7      # unseen facts: a guess among objects
    # a confidence threshold trades coverage for fewer confident errors (0.26 -> 0.12 at
    # t = 0.75, answering 0.82 of queries)
    assert m["coverage@t=0"].value == 1.0
    assert m["confident_error@t=0.75"].value < m["confident_error@t=0"].value - 0.05
    assert m["coverage@t=0.75"].value < 0.95
    # the model trained to say "unknown" says it on some facts it never read (0.10)
    assert m["abstains@0, person seen"].value > 0.02
    assert m["coverage@unknown"].value < 1.0
    assert r.status == "supported"
    assert {row["mentions"] for row in r.tables["mention counts"]} == {b[0] for b in h.BINS}
