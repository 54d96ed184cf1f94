"""What a run trains and how long it says that takes."""

import pytest
from test_organisms import TINY  # the two-stage plumbing recipe (tests/training is on the path)

from assay.training import organisms
from assay.training.recipes import RECIPES
from assay.training.schedule import missing, stage_seconds, train_seconds


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(RECIPES, "tiny", TINY)
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    return tmp_path


def test_estimates_count_only_stages_not_cached(tiny):
    whole, base = stage_seconds("tiny"), stage_seconds("tiny@pretrain")
    assert set(base) < set(whole), "s@pretrain's stage is part of s's chain, under one key"
    assert train_seconds("tiny") == pytest.approx(sum(whole.values()))
    assert all(s > 0 for s in whole.values())
    organisms.organism_path("tiny@pretrain")
    assert set(stage_seconds("tiny")) == set(whole) - set(base)
    assert train_seconds("tiny@pretrain") == 0
    # the fitted speed on 2 cores puts the default organism at several minutes, not seconds
    # or hours (1200 steps of 32 x 128 tokens at about 0.3 s a step)
    assert 4 * 60 < train_seconds("s") < 12 * 60
    assert train_seconds("ladder-32-150") < train_seconds("ladder-128-150") < train_seconds("s")


def test_missing_keeps_one_name_per_stage_chain(tiny):
    assert missing(["tiny@pretrain", "tiny", "tiny~1@pretrain"]) == ["tiny", "tiny~1@pretrain"]
    organisms.organism_path("tiny")
    assert missing(["tiny@pretrain", "tiny", "tiny~1@pretrain"]) == ["tiny~1@pretrain"]
