"""Calibration, abstention grading, flips and consistency on inputs whose answers are known."""

import numpy as np
import pytest

from assay.errors import AssayError
from assay.methods.trust import (
    abstention_score,
    brier,
    consistency,
    ece,
    flip_rate,
    reliability,
    rescue_rate,
    rms_calibration_error,
    top_label,
)


def _draw(n, truth, seed=0):
    """Confidences uniform on [0, 1], each answer right with probability truth(confidence)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    return p, rng.uniform(0, 1, n) < truth(p)


def test_a_calibrated_predictor_has_ece_near_zero():
    p, y = _draw(20000, lambda c: c)
    e = ece(p, y, n_bins=10, n_boot=200)
    assert e.value < 0.015 and e.ci_low <= 0.01


def test_a_known_miscalibration_has_its_analytic_ece():
    # right with probability c^2 at confidence c: ECE = E|c - c^2| = 1/2 - 1/3 = 1/6
    p, y = _draw(20000, lambda c: c ** 2)
    e = ece(p, y, n_bins=20, n_boot=200)
    assert e.value == pytest.approx(1 / 6, abs=0.01)
    assert e.ci_low < 1 / 6 + 0.01 and e.ci_high > 1 / 6 - 0.01
    # uniformly over-confident by 0.1: ECE 0.1
    q, z = _draw(20000, lambda c: np.clip(c - 0.1, 0, 1))
    assert ece(q, z, n_bins=20, n_boot=200).value == pytest.approx(0.1 - 0.1 ** 2 / 2, abs=0.01)


def test_the_debiased_estimate_removes_the_small_sample_bias():
    # 200 answers of a calibrated model: the plain ECE reads ~0.06 from noise alone; the
    # debiased RMS error sits near 0, and on the miscalibrated one near its true sqrt(E(c-c^2)^2)
    plain, debiased = [], []
    for seed in range(20):
        p, y = _draw(200, lambda c: c, seed)
        plain.append(ece(p, y, n_boot=50).value)
        debiased.append(rms_calibration_error(p, y, n_boot=50).value)
    assert np.mean(plain) > 0.04
    assert np.mean(debiased) < 0.5 * np.mean(plain)
    p, y = _draw(20000, lambda c: c ** 2)
    truth = np.sqrt(1 / 3 - 2 / 4 + 1 / 5)  # E[(c - c^2)^2] = 1/3 - 1/2 + 1/5
    assert rms_calibration_error(p, y, n_bins=20, n_boot=50).value == pytest.approx(truth, abs=0.01)


def test_reliability_bins_match_scikit_learn_and_brier_is_its_score():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    p, y = _draw(1000, lambda c: c ** 2, seed=3)
    points = reliability(p, y, n_bins=5)
    assert [pt["n"] for pt in points] == [200] * 5
    true, pred = calibration_curve(y, p, n_bins=5, strategy="quantile")
    np.testing.assert_allclose([pt["accuracy"].value for pt in points], true, atol=1e-9)
    np.testing.assert_allclose([pt["confidence"] for pt in points], pred, atol=1e-9)
    assert brier(p, y).value == pytest.approx(brier_score_loss(y, p))


def test_top_label_reads_the_first_ranked_option():
    conf, hit = top_label(np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]]), [0, 1])
    assert conf.tolist() == [0.7, 0.4] and hit.tolist() == [True, False]


def test_abstention_score_charges_wrong_answers_by_the_threshold():
    outcomes = ["correct"] * 6 + ["wrong"] * 2 + ["abstained"] * 2
    # t = 0.75: a wrong answer costs 3 points; (6 - 2 * 3) / 10 = 0
    assert abstention_score(outcomes, 0.75).value == pytest.approx(0.0)
    assert abstention_score(outcomes, 0.0).value == pytest.approx(0.6)
    with pytest.raises(AssayError, match="outcomes"):
        abstention_score(["right"], 0.5)


def test_flip_and_rescue_rates_count_hand_made_replies():
    before = [True, True, True, True, False, False]
    after = [True, False, False, True, True, False]
    assert flip_rate(before, after).value == pytest.approx(2 / 4)
    assert rescue_rate(before, after).value == pytest.approx(1 / 2)
    clustered = flip_rate(before, after, clusters=["a", "a", "b", "b", "c", "c"])
    assert clustered.value == pytest.approx(0.5) and clustered.n == 4


def test_consistency_separates_inconsistent_from_consistently_wrong():
    answers = [["paris", "paris", "paris"],   # right every time
               ["lyon", "lyon", "lyon"],      # the same wrong answer: consistently wrong
               ["paris", "lyon", "paris"],    # inconsistent
               ["nice", "lyon", "lyon"]]      # wrong, but not the same way: inconsistent
    out = consistency(answers, ["paris"] * 4)
    assert out["consistent_right"].value == pytest.approx(0.25)
    assert out["consistent_wrong"].value == pytest.approx(0.25)
    assert out["inconsistent"].value == pytest.approx(0.5)
