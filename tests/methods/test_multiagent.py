"""The Bertrand game's equilibria against their first-order conditions and the paper's
values, and independent Q-learning on hand-built and learned strategies."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from assay.methods.multiagent import (
    Market,
    Sessions,
    cycle_profit,
    deviate,
    limit_path,
    next_state,
    price_grid,
    profit_gain,
    q_learning,
)

BASE = Market()


def test_nash_price_is_a_mutual_best_response_and_matches_the_paper():
    p_n = BASE.nash_price()
    # firm 0's profit, the rival at p_n, is maximised at p_n (a continuous best response)
    best = minimize_scalar(lambda p: -BASE.profit(np.array([p, p_n]))[0], bounds=(1.0, 3.0),
                           method="bounded", options={"xatol": 1e-10})
    assert best.x == pytest.approx(p_n, abs=1e-6)
    q = BASE.demand(np.array([p_n, p_n]))[0]
    assert p_n - BASE.c == pytest.approx(BASE.mu / (1 - q), abs=1e-10)  # the FOC
    assert p_n == pytest.approx(1.4729, abs=1e-4)  # Calvano et al. 2020, baseline


def test_monopoly_price_maximises_joint_profit_and_matches_the_paper():
    p_m = BASE.monopoly_price()
    best = minimize_scalar(lambda p: -BASE.profit(np.array([p, p])).sum(), bounds=(1.0, 3.0),
                           method="bounded", options={"xatol": 1e-10})
    assert best.x == pytest.approx(p_m, abs=1e-6)
    assert p_m == pytest.approx(1.9250, abs=1e-4)
    assert profit_gain(BASE.profit(np.array([p_m, p_m]))[0], BASE) == pytest.approx(1.0)
    p_n = BASE.nash_price()
    assert profit_gain(BASE.profit(np.array([p_n, p_n]))[0], BASE) == pytest.approx(0.0, abs=1e-12)


def test_three_firms_and_more_differentiation_move_the_equilibria_the_expected_way():
    three, wide = Market(n=3), Market(mu=0.5)
    assert three.nash_price() < BASE.nash_price()           # more competition, lower price
    assert wide.nash_price() > BASE.nash_price()            # more differentiation, more power
    assert three.monopoly_price() > three.nash_price()


def test_price_grid_spans_nash_and_monopoly_widened_by_xi():
    g = price_grid(BASE, 15, 0.1)
    gap = BASE.monopoly_price() - BASE.nash_price()
    assert len(g) == 15
    assert g[0] == pytest.approx(BASE.nash_price() - 0.1 * gap)
    assert g[-1] == pytest.approx(BASE.monopoly_price() + 0.1 * gap)


def test_state_encodes_last_prices_and_memory_zero_has_one_state():
    acts = np.array([[3, 0], [7, 14]])  # (agents, sessions)
    assert list(next_state(np.array([5, 9]), acts, 15, 2, 1)) == [3 * 15 + 7, 0 * 15 + 14]
    assert list(next_state(np.array([5, 9]), acts, 15, 2, 0)) == [0, 0]
    two = next_state(np.array([3 * 15 + 7]), np.array([[1], [2]]), 15, 2, 2)
    assert list(two) == [(3 * 15 + 7) * 225 + 1 * 15 + 2]


def _sessions(greedy_rival: np.ndarray, greedy_self: np.ndarray) -> Sessions:
    """One session whose greedy policy tables are given, (states,) each, memory one."""
    grid = price_grid(BASE)
    m = len(grid)
    q = np.zeros((2, 1, m * m, m))
    for who, table in ((0, greedy_self), (1, greedy_rival)):
        q[who, 0, np.arange(m * m), table] = 1.0
    return Sessions(BASE, grid, 1, q, np.array([14 * m + 14]), np.array([True]), np.array([1]))


def test_a_trigger_strategy_punishes_a_deviation_and_a_constant_one_does_not():
    m = 15
    high = 12
    states = np.arange(m * m)
    rival_last = states % m
    self_last = states // m
    # both play `high` while both played high last period, otherwise the lowest price
    trigger = np.where((rival_last == high) & (self_last == high), high, 0)
    s = _sessions(trigger, trigger)
    s.state[:] = high * m + high
    _, actions = limit_path(s, 0)
    assert [tuple(a) for a in actions] == [(high, high)]  # the collusive cycle
    d = deviate(s, 0)
    assert d.deviated and d.rival_after < d.rival_undisturbed and d.deviator_gain < 0
    constant = np.full(m * m, high)
    c = _sessions(constant, constant)
    d = deviate(c, 0)
    assert d.deviated and d.rival_after == d.rival_undisturbed and d.deviator_gain > 0
    prices, profits, length = cycle_profit(c, 0)
    assert length == 1 and prices[0] == pytest.approx(c.grid[high])


def test_q_learning_is_seeded_per_session_and_deterministic():
    g = price_grid(BASE)
    a = q_learning(BASE, g, sessions=3, beta=1e-3, converge_after=500, max_periods=20_000, seed=4)
    b = q_learning(BASE, g, sessions=3, beta=1e-3, converge_after=500, max_periods=20_000, seed=4)
    two = q_learning(BASE, g, sessions=2, beta=1e-3, converge_after=500, max_periods=20_000, seed=4)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.q[:, :2], two.q)  # a session does not depend on how many run
    assert not np.array_equal(a.q[:, 0], a.q[:, 1])
    with pytest.raises(ValueError, match="two firms"):
        q_learning(Market(n=3), g, sessions=1)


def test_q_learners_with_memory_collude_and_punish_and_a_memoryless_state_leaks_nothing():
    """A faster exploration decay than the paper's (2e-5 for 4e-6) keeps the test at a few
    seconds; the baseline's profit gain (about 0.85) is what the study measures."""
    g = price_grid(BASE)
    one = q_learning(BASE, g, sessions=24, memory=1, beta=2e-5, seed=0)
    zero = q_learning(BASE, g, sessions=24, memory=0, beta=2e-5, seed=0)
    assert one.converged.all() and zero.converged.all()
    gains = [float(profit_gain(cycle_profit(one, j)[1].mean(), BASE)) for j in range(24)]
    assert 0.6 < np.mean(gains) < 1.0
    punished = [d.rival_after < d.rival_undisturbed and d.deviator_gain < 0
                for d in (deviate(one, j) for j in range(24)) if d.deviated]
    assert np.mean(punished) > 0.6
    for j in range(24):
        d = deviate(zero, j)
        assert d.rival_after == d.rival_undisturbed and (not d.deviated or d.deviator_gain > 0)


def test_homogenisation_of_independent_classifiers_is_near_one():
    from assay.methods.multiagent import homogenisation

    rng = np.random.default_rng(0)
    # five classifiers, each wrong on its own random 30% of 4000 items
    correct = (rng.random((5, 4000)) > 0.3).astype(int)
    est = homogenisation(correct, n_boot=500)
    assert est.ci_low <= 1.0 <= est.ci_high
    assert est.value == pytest.approx(1.0, abs=0.35)


def test_homogenisation_of_classifiers_sharing_a_base_is_above_one_and_clusters_widen_it():
    from assay.methods.multiagent import homogenisation

    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(100), 30)
    hard = rng.beta(1, 2, 100)[people]          # some people's questions are harder for all
    base_wrong = rng.random(3000) < hard
    # each model keeps the base's error with probability 0.8 and adds 5% of its own:
    # they fail together far more than their marginal rates predict
    wrong = np.array([(base_wrong & (rng.random(3000) < 0.8)) | (rng.random(3000) < 0.05)
                      for _ in range(4)])
    correct = (~wrong).astype(int)
    est = homogenisation(correct, n_boot=500)
    expected = wrong.all(0).mean() / np.prod(wrong.mean(1))
    assert est.value == pytest.approx(expected)
    assert est.ci_low > 3
    clustered = homogenisation(correct, clusters=people, n_boot=500)
    assert clustered.value == pytest.approx(expected)
    # questions about one person fail together, so resampling people widens the interval
    assert clustered.ci_high - clustered.ci_low > 1.3 * (est.ci_high - est.ci_low)
    with pytest.raises(Exception, match="0/1"):
        homogenisation(np.ones((1, 10)))
