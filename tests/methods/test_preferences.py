"""Utility fits and preference aggregation on planted utilities and hand-built groups."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from assay.methods.preferences import (
    borda,
    bradley_terry,
    choice_probabilities,
    condorcet_winner,
    copeland,
    cycle_share,
    empirical,
    holdout_accuracy,
    mixture,
    sample_choices,
    thurstonian_fit,
    thurstonian_probabilities,
)

# 60% of annotators rank a > b > c, 40% rank b > c > a, each choosing deterministically
FIRST = np.array([[0.5, 1, 1], [0, 0.5, 1], [0, 0, 0.5]])
SECOND = np.array([[0.5, 0, 0], [1, 0.5, 1], [1, 0, 0.5]])


def test_thurstonian_fit_recovers_planted_means_and_predicts_held_out_choices():
    rng = np.random.default_rng(0)
    mean, var = rng.normal(0, 1, 12), np.exp(rng.normal(0, 0.3, 12))
    p = thurstonian_probabilities(mean, var)
    fit_mean, fit_var = thurstonian_fit(sample_choices(p, 6000, rng), 12)
    assert spearmanr(fit_mean, mean).statistic > 0.97
    held_out = sample_choices(p, 4000, rng)
    oracle = holdout_accuracy(p, held_out)
    assert holdout_accuracy(thurstonian_probabilities(fit_mean, fit_var), held_out) > oracle - 0.01


def test_thurstonian_fit_on_random_choices_recovers_nothing():
    rng = np.random.default_rng(1)
    p = np.full((10, 10), 0.5)
    fit_mean, _ = thurstonian_fit(sample_choices(p, 4000, rng), 10)
    assert np.ptp(fit_mean) < 0.3  # coin flips: every utility about the same


def test_thurstonian_gradient_matches_finite_differences_and_stays_finite_when_extreme():
    from scipy.optimize import approx_fprime, minimize

    import assay.methods.preferences as prefs

    rng = np.random.default_rng(3)
    choices = sample_choices(thurstonian_probabilities(rng.normal(0, 1, 5), np.ones(5)), 500, rng)
    seen = {}

    def spy(fun, x0, jac, method, options):
        seen["loss"] = fun
        return minimize(fun, x0, jac=jac, method=method, options=options)

    original = prefs.minimize
    prefs.minimize = spy
    try:
        thurstonian_fit(choices, 5)
    finally:
        prefs.minimize = original
    loss = seen["loss"]
    theta = rng.normal(0, 0.5, 10)
    numeric = approx_fprime(theta, lambda t: loss(t)[0], 1e-6)
    np.testing.assert_allclose(loss(theta)[1], numeric, rtol=1e-3, atol=1e-3)
    far = np.concatenate([np.linspace(-30, 30, 5), np.zeros(5)])
    assert np.isfinite(loss(far)[1]).all()


def test_three_group_example_borda_and_majority_disagree_with_a_known_answer():
    p = mixture([FIRST, SECOND], np.array([0.6, 0.4]))
    np.testing.assert_allclose(borda(p), [1.2, 1.4, 0.4])
    np.testing.assert_allclose(copeland(p), [2, 1, 0])
    assert condorcet_winner(p) == 0
    assert cycle_share(p) == 0.0
    # the Bradley-Terry reward takes the Borda winner b over the majority's a
    reward = bradley_terry(sample_choices(p, 4000, np.random.default_rng(0)), np.eye(3))
    assert list(np.argsort(-reward)) == [1, 0, 2]


def test_a_third_group_makes_majorities_cycle_and_leaves_no_condorcet_winner():
    third = np.array([[0.5, 1, 0], [0, 0.5, 0], [1, 1, 0.5]])  # c > a > b
    p = mixture([FIRST, SECOND, third], np.ones(3) / 3)  # a>b, b>c, c>a by 2 to 1
    assert condorcet_winner(p) is None
    assert cycle_share(p) == 1.0
    np.testing.assert_allclose(borda(p), [1, 1, 1])


def test_one_group_bradley_terry_recovers_its_utilities():
    u = np.array([0.0, 1.0, -0.5, 2.0, 0.3])
    p = choice_probabilities(u, 1.0)
    reward = bradley_terry(sample_choices(p, 20_000, np.random.default_rng(2)), np.eye(5))
    np.testing.assert_allclose(reward - reward.mean(), u - u.mean(), atol=0.1)


def test_empirical_counts_both_orders_and_bad_inputs_are_refused():
    choices = np.array([[0, 1, 1], [1, 0, 1], [0, 2, 0]])
    wins, totals = empirical(choices, 3)
    assert wins[0, 1] == 1 and wins[1, 0] == 1 and wins[2, 0] == 1
    assert totals[0, 1] == totals[1, 0] == 2
    with pytest.raises(ValueError, match="summing to 1"):
        mixture([FIRST, SECOND], np.array([0.5, 0.6]))
    for bad in ([[0, 0, 1]], [[0, 3, 1]], [[0, 1, 2]], np.zeros((0, 3))):
        with pytest.raises(ValueError, match="choices must be rows"):
            bradley_terry(np.array(bad, dtype=int), np.eye(3))
        with pytest.raises(ValueError, match="choices must be rows"):
            thurstonian_fit(np.array(bad, dtype=int), 3)
