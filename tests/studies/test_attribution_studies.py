"""The 3.1 attribution studies on xs: the sentences they rank, and real runs through the
runner with measured effects and controls that stay quiet."""

import numpy as np
import pytest

from assay.studies._attribution_common import fact_sentences, restricted
from assay.world import World, WorldConfig, documents


def test_each_sentence_states_one_fact_of_its_biography():
    world = World(WorldConfig.preset("xs"))
    people = world.people()[:5]
    sentences = fact_sentences(world, people)
    docs = {d.id: d for d in documents(world, ("bio",))}
    assert len({s.text for s in sentences}) == len(sentences)  # verbatim repeats kept once
    for s in sentences:
        assert s.text in docs[s.doc].text and s.fact in docs[s.doc].facts
        assert s.fact.subject in people
    # every fact of every person is stated, once per biography at most (xs: two biographies)
    for person in people:
        for fact in world.facts_about(person):
            assert 1 <= sum(s.fact == fact for s in sentences) <= 2
    # the first biography states every fact in the first paraphrase: a third of six facts
    # times two biographies is at least the 30 first-paraphrase sentences here
    assert len(sentences) >= 5 * 6


def test_restricted_scores_rank_only_the_allowed_candidates():
    from assay.methods.attribution import reciprocal_rank

    scores = np.array([[5.0, 4.0, 3.0, 2.0]])
    allowed = np.array([[False, True, False, True]])
    assert reciprocal_rank(restricted(scores, allowed), [{3}])[0] == 0.5  # 2nd of two


@pytest.mark.slow
def test_attribution_recall_baselines_find_the_stating_sentences(run_xs):
    record = run_xs("attribution-recall", {"n_people": "8", "distractors": "8"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    # measured on xs (16 queries, 8 people; each ranks ~30 sentences of its relation):
    # MRR EK-FAC 0.55, gradient dot 0.53, cosine 0.64, BM25 0.97, chance 0.19. Every method
    # finds the truth above chance; on this small model BM25 (name and answer overlap) wins,
    # so EK-FAC's gain over BM25 lies below zero and the claim reads not supported. On
    # another machine's draw of xs one method's lift over chance was 0.25 [0.08, 0.45]
    for method in ("ekfac", "dot", "cosine", "bm25"):
        assert m[f"lift/{method}"].ci_low > 0
    assert m["mrr/bm25"].value > 0.9
    assert m["mrr_gain/bm25"].ci_high < 0
    assert r.verdict.status == "not supported"
    # invented people: no sentence states their facts, so every method sits at chance
    for method in ("ekfac", "dot", "cosine", "bm25"):
        assert abs(c[f"lift/{method}"].value) < 0.1
        assert c[f"lift/{method}"].level == pytest.approx(1 - 0.05 / 4)
    assert r.control.verdict.status != "supported"
    assert any(row["top sentences"].startswith("* ") for row in r.tables["top sentences"])


@pytest.mark.slow
def test_attribution_lds_predicts_the_convex_model_and_shuffling_kills_it(run_xs):
    record = run_xs("attribution-lds", {"n_people": "8", "subsets": "8"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    # measured on xs (56 sentences, 24 queries, 8 retrains per model): EK-FAC LDS 0.72
    # [0.62, 0.82] on the logistic regression, 0.77 on the MLP, 0.59 on the tiny organism
    # (a drop of 0.13 [-0.00, 0.25]: inconclusive at this size; s reads supported), BM25 0.06
    assert m["lds/logistic"].ci_low > 0.5
    assert m["lds/organism"].value < m["lds/logistic"].value
    assert m["lds/logistic"].value > m["lds/logistic/bm25"].value + 0.3
    assert m["lds/mlp"].ci_low > 0.3
    # TracIn over four checkpoints of the runs trained by gradient steps (0.71 on the MLP,
    # 0.46 on the organism); L-BFGS has no such run, so the logistic regression has none
    assert m["lds/mlp/tracin"].value > 0.5 and m["lds/organism/tracin"].value > 0.2
    assert "lds/logistic/tracin" not in m
    # with the subsets' labels shuffled nothing predicts retraining: every LDS near zero
    for model in ("logistic", "mlp", "organism"):
        for method in ("ekfac", "tracin", "dot", "bm25"):
            if model != "logistic" or method != "tracin":
                assert abs(c[f"lds/{model}/{method}"].value) < 0.2
    assert r.control.verdict.status == "not supported"


@pytest.mark.slow
def test_memorization_grows_with_copies_and_deduplication_removes_it(run_xs):
    record = run_xs("memorization-duplicates", {
        "sizes": "[32, 48]", "copies": "[1, 16]", "per_group": "4", "unplanted": "16",
        "steps": "100", "alternatives": "99"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    # measured on xs (4 canaries a group, 100 steps): at 16 copies d48 reaches an exposure of
    # 9.7 bits, 8.1 [4.1, 11.7] above the canaries planted once (1.6); d32 reaches 4.0 bits;
    # deduplicated, 2.3 bits (a drop of 7.3 [3.3, 11.7], 0.91 of the gain from copies)
    assert m["exposure@d48/x16"].value > 5.5
    assert m["exposure_gain"].ci_low > 2
    assert m["dedup_drop"].ci_low > 1
    assert m["size_gain"].value > 0
    # 16 canaries never planted sit at chance (1/ln 2 = 1.44 bits): -0.30 [-0.77, +0.23]
    assert abs(c["exposure_lift"].value) < 1
    assert r.control.verdict.status == "not supported"
