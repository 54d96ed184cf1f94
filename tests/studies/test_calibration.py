"""calibration-after-safety-training: the confidence it reads off option scores, its models,
and a real run on xs."""

import numpy as np
import pytest

from assay.studies import calibration
from assay.studies.calibration import _final, confidences


def test_confidence_is_the_renormalised_probability_of_the_first_ranked_option(monkeypatch):
    # log-likelihoods of four options; the renormalised top probabilities are known exactly
    logits = [np.log([0.1, 0.2, 0.3, 0.4]) - 7.0,   # ranks option 3 first at 0.4: the answer
              np.log([0.7, 0.1, 0.1, 0.1]) + 2.0,   # ranks option 0 first at 0.7: wrong
              np.log([0.25, 0.25, 0.25, 0.25])]     # a four-way tie: option 0 first, right
    monkeypatch.setattr(calibration, "score_items", lambda lm, items: (logits, [3, 2, 0]))
    conf, hit = confidences(None, [None] * 3)
    assert conf == pytest.approx([0.4, 0.7, 0.25])
    assert hit.tolist() == [1.0, 0.0, 1.0]


def test_the_safety_trained_model_is_the_organism_at_its_last_stage():
    assert _final("s@pretrain") == "s"
    assert _final("xs~1@pretrain") == "xs~1"
    assert _final("s") == "s"


@pytest.mark.slow
def test_a_confidence_finetune_raises_confidence_and_ece_on_xs(run_xs):
    record = run_xs("calibration-after-safety-training", {})
    m = record.result.metrics
    # measured on xs (720 questions about 40 people): the pretrained model answers 0.87 of
    # them at mean confidence 0.96 (ECE 0.088 [0.032, 0.152]); finetuning on its own answers,
    # stated as given, takes confidence to 0.98 and ECE up by 0.025 [0.007, 0.046]; the
    # neutral finetune lowers confidence to 0.93 and ECE by 0.025
    assert m["accuracy@pretrained"].value > 0.8
    assert m["confidence@confidence finetune"].ci_low > m["confidence@pretrained"].ci_high
    assert m["confidence@neutral finetune"].ci_high < m["confidence@pretrained"].ci_low
    assert 0.015 < m["ece_change@confidence finetune"].value < 0.04
    assert m["ece_change@confidence finetune"].ci_low > 0
    assert m["ece@pretrained"].ci_low < 0.05 < m["ece@pretrained"].ci_high
    # the rule cannot decide on 40 people; the neutral finetune lowers ECE, which leaves the
    # control (does a finetune that teaches nothing raise it?) quiet
    assert record.result.verdict.status == "inconclusive"
    assert record.result.control.verdict.status == "not supported"
    bins = [row for row in record.result.tables["reliability"] if row["model"] == "pretrained"]
    assert len(bins) == 10 and sum(row["n"] for row in bins) == 720
