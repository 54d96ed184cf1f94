"""The hazard classifier behind pretraining-data filtering and conditional training, and the
recipes and data sources built on it."""

import math

import pytest

from assay.training import filtering
from assay.training.data import SOURCES
from assay.training.filtering import CLEAN, FLAGGED, hazard_scores, kept, operating_point
from assay.training.recipes import RECIPES, _filtered, get_recipe, retain_twin, variant
from assay.world import World, WorldConfig, documents


@pytest.fixture(scope="module")
def world_s():
    return World(WorldConfig.preset("s"))


def test_the_classifier_separates_hazardous_documents_it_was_not_fitted_on(world_s):
    from sklearn.metrics import roc_auc_score

    docs = documents(world_s)
    scores = hazard_scores(world_s)
    assert hazard_scores(world_s) == scores  # deterministic (and cached)
    # measured: AUROC 1.0 on s; the labelled fifth holds ~14 of the 72 hazardous documents
    assert roc_auc_score([d.hazardous for d in docs], scores) > 0.99


@pytest.mark.parametrize("recall", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_an_operating_point_removes_at_least_its_recall_of_the_hazard(world_s, recall):
    f = operating_point(world_s, recall)
    docs = documents(world_s)
    hazardous = [d for d in docs if d.hazardous]
    removed = [d for d in docs if d.id in f.removed]
    assert f.recall >= recall and f.recall == sum(d.hazardous for d in removed) / len(hazardous)
    assert f.hazardous_kept == len(hazardous) - sum(d.hazardous for d in removed)
    assert f.hazardous_kept == len(hazardous) - math.ceil(recall * len(hazardous))  # no ties here
    assert f.precision == 1.0 and f.benign_removed == 0  # measured: the hazard is lexical
    # its misses are the hazardous documents the classifier finds least hazardous
    score = dict(zip((d.id for d in docs), hazard_scores(world_s)))
    missed = [score[d.id] for d in hazardous if d.id not in f.removed]
    caught = [score[d.id] for d in hazardous if d.id in f.removed]
    assert not missed or max(missed) < min(caught)
    assert {d.id for d in kept(world_s, recall)} == {d.id for d in docs} - f.removed


def test_higher_recall_removes_a_superset(world_s):
    removed = [operating_point(world_s, r / 100).removed for r in filtering.FILTER_LEVELS]
    assert all(a < b for a, b in zip(removed, removed[1:]))


def test_a_bad_recall_is_refused(world_s):
    with pytest.raises(ValueError, match="recall"):
        operating_point(world_s, 0.0)


def test_filtered_sources_hold_what_the_filter_lets_through(world_s):
    syn = SOURCES["synthesis_filter90"](world_s)
    assert {d.id for d in syn} == {d.id for d in kept(world_s, 0.9, ("synthesis",))}
    assert len(syn) == 72 - 65  # ceil(0.9 * 72) removed
    assert len(SOURCES["documents_filter90"](world_s)) == len(documents(world_s)) - 65


def test_conditional_sources_tag_each_document_by_the_classifier(world_s):
    texts = SOURCES["documents_cond"](world_s)
    docs = documents(world_s)
    assert len(texts) == len(docs)
    flagged = filtering.flagged(world_s)
    for d, text in zip(docs, texts):
        tag = FLAGGED if d.id in flagged else CLEAN
        assert text == f"{tag} {d.text}"
    # measured: the classifier's own decision flags 69 of the 72 hazardous documents, and no
    # benign one; the three it misses are trained under the clean tag
    assert len(flagged) == 69 and all(d.hazardous for d in docs if d.id in flagged)


def test_a_filtered_recipe_keeps_each_missed_document_as_often_as_mle():
    s, f90, retain = RECIPES["s"], RECIPES["s-filter90"], RECIPES["s-retain"]
    mle = dict(s.stages[0].mixture)
    mix = dict(f90.stages[0].mixture)
    assert sum(mix.values()) == pytest.approx(sum(mle.values()))
    # the synthesis source keeps 10% of its documents at 10% of its weight: the same rate each
    assert mix["synthesis_filter90"] == pytest.approx(0.1 * mle["synthesis"])
    assert mix["documents_filter90"] == pytest.approx(mle["documents"] + 0.9 * mle["synthesis"])
    # at recall 1 the weights are the retain-only twin's
    perfect = dict(_filtered(s, 100).stages[0].mixture)
    assert perfect["documents_filter100"] == pytest.approx(
        dict(retain.stages[0].mixture)["documents_no_hazard"])
    assert perfect["synthesis_filter100"] == 0
    # the architecture, world, steps and seed are the organism's: only the data changes
    for other in (f90, RECIPES["s-cond"]):
        assert (other.model, other.world, other.seed) == (s.model, s.world, s.seed)
        assert [st.train for st in other.stages] == [st.train for st in s.stages]
        assert other.hash != s.hash


def test_variants_keep_replicate_and_stage():
    assert variant("s~2@pretrain", "filter90") == "s-filter90~2@pretrain"
    assert retain_twin("s~1@pretrain") == "s-retain~1@pretrain"
    assert get_recipe("s-filter90~2").seed == 2
