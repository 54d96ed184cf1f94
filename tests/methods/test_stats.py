import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import binomtest, chi2_contingency

from assay.errors import AssayError
from assay.methods import stats
from assay.methods.stats import (
    Estimate,
    bootstrap,
    clustered_bootstrap,
    exact,
    paired_bootstrap,
    rate,
    two_proportion_test,
    wilson,
)

Z95 = 1.959963984540054  # standard normal 0.975 quantile


def _wilson_by_hand(k, n, z=Z95):
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_public_api_is_listed():
    assert set(stats.__all__) >= {
        "Estimate", "TestResult", "wilson", "exact", "rate", "bootstrap", "paired_bootstrap",
        "clustered_bootstrap", "two_proportion_test",
    }
    assert all(hasattr(stats, name) for name in stats.__all__)


def test_estimate_is_frozen_and_prints_compactly():
    e = Estimate(value=0.8125, ci_low=0.7712, ci_high=0.8481, n=400, method="wilson")
    assert str(e) == "0.812 [0.771, 0.848] (n=400, wilson)"
    assert e.level == 0.95
    with pytest.raises(ValidationError):
        e.value = 0.5


def test_wilson_half_matches_formula_and_reference():
    e = wilson(5, 10)
    low, high = _wilson_by_hand(5, 10)
    assert e.value == 0.5 and e.n == 10 and e.method == "wilson"
    assert e.ci_low == pytest.approx(low, abs=1e-12)
    assert e.ci_high == pytest.approx(high, abs=1e-12)
    assert (e.ci_low, e.ci_high) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # published value


def test_wilson_zero_successes():
    e = wilson(0, 10)
    assert e.value == 0.0 and e.ci_low == 0.0
    assert e.ci_high == pytest.approx(Z95**2 / (10 + Z95**2), abs=1e-12)  # closed form at k=0
    assert e.ci_high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10).ci_high == 1.0
    assert wilson(10, 10).ci_low == pytest.approx(1 - e.ci_high, abs=1e-12)  # symmetry


def test_wilson_level_changes_width():
    w90, w95, w99 = (wilson(30, 100, level) for level in (0.90, 0.95, 0.99))
    widths = [e.ci_high - e.ci_low for e in (w90, w95, w99)]
    assert widths[0] < widths[1] < widths[2]
    assert str(w90).endswith("(n=100, wilson, 90%)")


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (7, 40), (0, 1), (1, 1)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_exact_matches_scipy_binomtest(k, n, level):
    ref = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    e = exact(k, n, level)
    assert e.method == "exact" and e.value == k / n
    assert e.ci_low == pytest.approx(ref.low, abs=1e-10)
    assert e.ci_high == pytest.approx(ref.high, abs=1e-10)


def test_wilson_coverage_near_nominal():
    p, n, draws = 0.3, 50, 2000
    ks = np.random.default_rng(0).binomial(n, p, size=draws)
    intervals = {k: wilson(int(k), n) for k in np.unique(ks)}
    covered = np.mean([intervals[k].ci_low <= p <= intervals[k].ci_high for k in ks])
    assert 0.92 <= covered <= 0.98


def test_exact_is_wider_than_wilson():
    for k in (1, 5, 12):
        w, e = wilson(k, 40), exact(k, 40)
        assert e.ci_high - e.ci_low > w.ci_high - w.ci_low


def test_rate_counts_hits():
    hits = [True] * 30 + [False] * 70
    assert rate(hits) == wilson(30, 100)
    assert rate(np.array(hits), method="exact") == exact(30, 100)
    assert rate([1, 0, 0, 1]) == wilson(2, 4)


def test_bootstrap_same_seed_identical_different_seed_differs():
    x = np.random.default_rng(1).normal(size=300)
    a, b = bootstrap(x, seed=7), bootstrap(x, seed=7)
    c = bootstrap(x, seed=8)
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.value == c.value == pytest.approx(x.mean())
    assert a.method == "bootstrap-percentile" and a.n == 300


def test_bootstrap_mean_interval_matches_normal_theory():
    x = np.random.default_rng(2).normal(loc=1.0, scale=2.0, size=1000)
    e = bootstrap(x)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert e.ci_low < x.mean() < e.ci_high
    assert e.ci_low == pytest.approx(x.mean() - Z95 * se, abs=0.15 * se)
    assert e.ci_high == pytest.approx(x.mean() + Z95 * se, abs=0.15 * se)


def test_bootstrap_stat_without_axis_matches_vectorised():
    x = np.random.default_rng(3).exponential(size=200)
    fast = bootstrap(x, stat=np.median, n_boot=500)
    slow = bootstrap(x, stat=lambda v: float(np.median(v)), n_boot=500)
    assert fast == slow.model_copy(update={"method": fast.method})


def test_clustered_interval_wider_on_correlated_data():
    rng = np.random.default_rng(4)
    n_clusters, per = 20, 50
    effects = rng.normal(scale=1.0, size=n_clusters)
    clusters = [f"prompt-{c}" for c in np.repeat(np.arange(n_clusters), per)]
    x = np.repeat(effects, per) + rng.normal(scale=0.1, size=n_clusters * per)
    naive = bootstrap(x)
    clustered = clustered_bootstrap(x, clusters)
    assert clustered.method == "bootstrap-clustered" and clustered.n == x.size
    assert clustered.value == pytest.approx(naive.value)
    ratio = (clustered.ci_high - clustered.ci_low) / (naive.ci_high - naive.ci_low)
    assert ratio > 1.5
    assert clustered_bootstrap(x, clusters, seed=3) == clustered_bootstrap(x, clusters, seed=3)


def test_clustered_unequal_sizes_mean_path_matches_generic_path():
    rng = np.random.default_rng(5)
    clusters = rng.integers(0, 15, size=400)  # unequal cluster sizes
    x = rng.normal(size=400) + clusters * 0.1
    fast = clustered_bootstrap(x, clusters, n_boot=300, seed=1)
    slow = clustered_bootstrap(x, clusters, stat=lambda v: float(np.mean(v)), n_boot=300, seed=1)
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=1e-12)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=1e-12)


def test_clustered_with_singleton_clusters_is_like_plain_bootstrap():
    x = np.random.default_rng(6).normal(size=500)
    plain, clustered = bootstrap(x), clustered_bootstrap(x, range(500))
    width = plain.ci_high - plain.ci_low
    assert clustered.ci_high - clustered.ci_low == pytest.approx(width, rel=0.15)


def test_paired_bootstrap_sees_what_separate_intervals_miss():
    # 500 items; system B solves A's items plus 20 more and loses 5: +3 points, consistent.
    rng = np.random.default_rng(7)
    a = rng.random(500) < 0.6
    b = a.copy()
    b[rng.choice(np.flatnonzero(~a), 20, replace=False)] = True
    b[rng.choice(np.flatnonzero(a), 5, replace=False)] = False
    a, b = a.astype(float), b.astype(float)
    paired = paired_bootstrap(b, a)
    assert paired.method == "bootstrap-paired (at least Tango)" and paired.n == 500
    assert paired.value == pytest.approx(0.03)
    assert paired.ci_low > 0  # excludes 0
    ea, eb = bootstrap(a), bootstrap(b)
    assert eb.ci_low < ea.ci_high  # separate intervals overlap
    assert paired.ci_high - paired.ci_low < 0.5 * (eb.ci_high - eb.ci_low)


def test_two_proportion_test_matches_hand_computed_z():
    res = two_proportion_test(45, 100, 30, 100)
    pooled = 75 / 200
    z = 0.15 / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    assert res.statistic == pytest.approx(z, rel=1e-12)
    assert res.statistic == pytest.approx(2.1909, abs=1e-4)
    assert res.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    chi2 = chi2_contingency([[45, 55], [30, 70]], correction=False)
    assert res.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    assert res.difference.value == pytest.approx(0.15)
    assert res.difference.ci_low < 0.15 < res.difference.ci_high


def test_two_proportion_newcombe_interval_matches_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80, method 10.
    diff = two_proportion_test(56, 70, 48, 80).difference
    assert diff.method == "newcombe" and diff.n == 150
    assert (diff.ci_low, diff.ci_high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_two_proportion_equal_rates_is_not_significant():
    res = two_proportion_test(30, 100, 30, 100)
    assert res.statistic == 0.0 and res.p_value == pytest.approx(1.0)
    assert two_proportion_test(0, 50, 0, 80).p_value == 1.0  # degenerate pooled rate
    rng = np.random.default_rng(8)
    ps = np.array([two_proportion_test(int(k1), 200, int(k2), 200).p_value
                   for k1, k2 in rng.binomial(200, 0.4, size=(500, 2))])
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09  # false positives near the nominal 5%
    assert 0.4 <= np.mean(ps) <= 0.6  # p-values roughly uniform under the null


@pytest.mark.parametrize("call, match", [
    (lambda: wilson(3, 0), "at least one trial"),
    (lambda: wilson(11, 10), "must lie in 0..n"),
    (lambda: exact(-1, 10), "must lie in 0..n"),
    (lambda: wilson(2.5, 10), "must be integers"),
    (lambda: wilson(3, 10, level=1.0), "strictly between 0 and 1"),
    (lambda: exact(3, 10, level=0), "strictly between 0 and 1"),
    (lambda: bootstrap([1.0, 2.0], level=95), "strictly between 0 and 1"),
    (lambda: bootstrap([]), "non-empty"),
    (lambda: bootstrap([1.0, float("nan")]), "NaN"),
    (lambda: bootstrap([1.0, 2.0], n_boot=0), "n_boot"),
    (lambda: bootstrap([1.0, 2.0], stat=lambda v, axis=None: np.asarray(v)), "one number"),
    (lambda: rate([]), "non-empty"),
    (lambda: rate([True, False], method="wald"), "unknown rate method"),
    (lambda: paired_bootstrap([1.0, 2.0], [1.0]), "equal length"),
    (lambda: clustered_bootstrap([1.0, 2.0], ["a"]), "one cluster key per value"),
    (lambda: clustered_bootstrap([1.0, 2.0], ["a", "a"]), "at least 2 clusters"),
    (lambda: clustered_bootstrap([1.0, 2.0], [[1], [2]]), "hashable"),
    (lambda: two_proportion_test(5, 10, 3, 0), "at least one trial"),
])
def test_bad_inputs_raise_assay_error(call, match):
    with pytest.raises(AssayError, match=match):
        call()


# ---- draws for statistics the one-array bootstraps cannot take


def _clustered_data(seed=0, g=40, m=10, spread=1.0):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(g), m)
    x = rng.normal(0, spread, g)[clusters] + rng.normal(0, 0.2, g * m)
    return x, clusters


def test_cluster_resamples_widen_the_interval_of_correlated_values():
    x, clusters = _clustered_data()
    by_cluster = stats.from_draws(x.mean(), [x[i].mean() for i, _ in
                                             stats.cluster_resamples(clusters, 1000, seed=1)], x.size)
    by_item = stats.from_draws(x.mean(), [x[i].mean() for i in stats.resamples(x.size, 1000, 1)],
                               x.size, "bootstrap")
    width = lambda e: e.ci_high - e.ci_low  # noqa: E731
    # ten values per cluster, nearly all variance between clusters: about sqrt(10) wider
    assert 2.3 < width(by_cluster) / width(by_item) < 4.0
    # and it agrees with clustered_bootstrap, which resamples the same unit
    ref = clustered_bootstrap(x, clusters, n_boot=1000, seed=1)
    assert width(by_cluster) == pytest.approx(width(ref), rel=0.15)


def test_cluster_resamples_label_a_cluster_drawn_twice_as_two():
    clusters = np.array(["b", "a", "b", "c", "a"])
    for idx, keys in stats.cluster_resamples(clusters, 50, seed=3):
        assert len(idx) == len(keys)
        # rows of one drawn cluster share a key and a cluster name; keys count the draws
        for k in np.unique(keys):
            assert len(set(clusters[idx[keys == k]])) == 1
        assert len(np.unique(keys)) == 3
    with pytest.raises(AssayError, match="at least 2 clusters"):
        stats.cluster_resamples(["a", "a"], 10)


def test_clustered_mean_draws_pick_the_same_clusters_for_every_condition():
    x, clusters = _clustered_data(seed=2)
    values = np.stack([x, x + 0.5])  # condition 2 = condition 1 shifted on the same items
    diff = stats.clustered_mean_draws(values, clusters, lambda m: m[:, 1] - m[:, 0], 500, 4)
    assert np.allclose(diff, 0.5)  # paired resampling: the shift has no sampling error
    one = stats.clustered_mean_draws(values, clusters, lambda m: m[:, 0], 2000, 4)
    ref = clustered_bootstrap(x, clusters, n_boot=2000, seed=4)
    assert np.percentile(one, 2.5) == pytest.approx(ref.ci_low, abs=0.1)
    assert np.percentile(one, 97.5) == pytest.approx(ref.ci_high, abs=0.1)


def test_from_draws_drops_undefined_draws_and_contains_the_point():
    e = stats.from_draws(0.5, [0.1, 0.2, math.nan, 0.3], n=4)
    assert e.ci_high == 0.5 and e.ci_low == pytest.approx(0.105)  # widened up to the point
    empty = stats.from_draws(0.5, [math.nan, math.nan], n=2)
    assert math.isnan(empty.ci_low) and math.isnan(empty.ci_high)
    assert stats.resamples(5, 3, seed=7)[2].tolist() == stats.resamples(5, 3, seed=7)[2].tolist()


def test_seed_cluster_bootstrap_carries_the_variance_between_training_runs():
    # 3 training runs whose means differ by a run effect (sd 0.3), 12 clusters each with
    # a cluster effect: resampling runs too must widen the interval well past the
    # cluster-only one, and cover the mean of the run effects' distribution (0.5)
    rng = np.random.default_rng(4)
    run_effect = 0.5 + rng.normal(0, 0.3, 3)
    values, seeds, clusters = [], [], []
    for r, mu in enumerate(run_effect):
        for c in range(12):
            centre = mu + rng.normal(0, 0.05)
            for _ in range(4):
                values.append(centre + rng.normal(0, 0.05))
                seeds.append(r)
                clusters.append(c)
    nested = stats.seed_cluster_bootstrap(values, seeds, clusters, n_boot=2000, seed=0)
    flat = stats.clustered_bootstrap(values, [(s, c) for s, c in zip(seeds, clusters)],
                                     n_boot=2000, seed=0)
    assert nested.value == pytest.approx(np.mean(values))
    assert nested.method == "bootstrap-seeds-then-clusters"
    assert (nested.ci_high - nested.ci_low) > 3 * (flat.ci_high - flat.ci_low)
    assert nested.ci_low < 0.5 < nested.ci_high
    # same seed, same draws; one run reduces to resampling its clusters
    again = stats.seed_cluster_bootstrap(values, seeds, clusters, n_boot=2000, seed=0)
    assert again == nested
    one = [i for i, s in enumerate(seeds) if s == 0]
    single = stats.seed_cluster_bootstrap([values[i] for i in one], [0] * len(one),
                                          [clusters[i] for i in one], n_boot=2000, seed=0)
    alone = stats.clustered_bootstrap([values[i] for i in one], [clusters[i] for i in one],
                                      n_boot=2000, seed=0)
    assert (single.ci_high - single.ci_low) == pytest.approx(alone.ci_high - alone.ci_low,
                                                             rel=0.25)


def test_seed_cluster_resamples_refuse_what_cannot_be_resampled():
    with pytest.raises(AssayError, match="two training runs or two clusters"):
        stats.seed_cluster_resamples([0, 0], ["a", "a"], 10)
    with pytest.raises(AssayError, match="one seed and one cluster per row"):
        stats.seed_cluster_resamples([0, 1], ["a"], 10)


def test_seed_cluster_rate_pools_runs_and_keeps_a_wilson_floor():
    # two runs of 6 rows about 3 clusters: all hits in one run, none in the other
    rate = stats.seed_cluster_rate({0: [1] * 6, 1: [0] * 6}, ["a", "a", "b", "b", "c", "c"],
                                   "agents", seed=0)
    assert rate.value == pytest.approx(0.5) and rate.n == 12
    assert rate.ci_low <= 0.05 and rate.ci_high >= 0.95  # the runs disagree: the interval says so
    assert rate.method == "bootstrap over training seeds, then agents (at least Wilson)"
    # one run at a rate of 0: the bootstrap has no width, the Wilson floor gives it one
    none = stats.seed_cluster_rate({0: [0] * 6}, ["a", "a", "b", "b", "c", "c"], seed=0)
    assert none.value == 0.0 and none.ci_high == pytest.approx(stats.wilson(0, 6).ci_high)


def test_crossed_resamples_draw_runs_and_items_apart():
    draws = stats.crossed_resamples(3, 10, 200, seed=0)
    assert len(draws) == 200
    assert all(r.shape == (3,) and i.shape == (10,) for r, i in draws)
    assert {int(x) for r, _ in draws for x in r} == {0, 1, 2}  # runs are resampled too
    one = stats.crossed_resamples(1, 10, 5, seed=0)
    assert all((r == 0).all() and r.shape == (1,) for r, _ in one)  # one run: items only


def _tango_by_brute_force(b, c, n, z=Z95):
    """The score interval found by maximising the constrained likelihood on a grid (no closed
    form) and scanning hypothesised differences: slow, independent of the closed form."""
    def score(delta):
        q = np.linspace(max(0.0, -delta) + 1e-9, (1 - delta) / 2 - 1e-9 if delta >= 0
                        else (1 + delta) / 2 - delta - 1e-9, 20001)  # q = p01, p10 = q + delta
        rest = np.clip(1 - 2 * q - delta, 1e-300, None)
        loglik = b * np.log(q + delta) + c * np.log(q) + (n - b - c) * np.log(rest)
        q_hat = q[np.argmax(loglik)]
        return (b - c - n * delta) / math.sqrt(n * (2 * q_hat + delta * (1 - delta)))
    inside = [d for d in np.linspace(-0.99, 0.99, 1981) if abs(score(d)) <= z]
    return min(inside), max(inside)


@pytest.mark.parametrize("b,c,n", [(12, 2, 50), (40, 20, 160), (3, 7, 60), (5, 1, 200)])
def test_paired_rate_difference_is_the_score_interval(b, c, n):
    e = stats.paired_rate_difference(b, c, n)
    low, high = _tango_by_brute_force(b, c, n)
    assert e.value == pytest.approx((b - c) / n)
    assert e.ci_low == pytest.approx(low, abs=0.002) and e.ci_high == pytest.approx(high, abs=0.002)
    assert e.method == "tango-score" and e.n == n


def test_paired_rate_difference_keeps_a_width_when_no_pair_differs():
    # no discordant pair in 156: +-z^2/(n + z^2), Wilson's upper end at a rate of 0
    e = stats.paired_rate_difference(0, 0, 156)
    assert e.value == 0.0
    assert e.ci_high == pytest.approx(stats.wilson(0, 156).ci_high, abs=1e-6)
    assert e.ci_low == pytest.approx(-e.ci_high, abs=1e-6)
    assert (e.ci_low, e.ci_high) != (0.0, 0.0)
    # every pair discordant one way: the difference is 1 and the interval reaches it
    assert stats.paired_rate_difference(20, 0, 20).ci_high == 1.0


def test_paired_rate_difference_covers_near_nominal():
    rng = np.random.default_rng(3)
    for p10, p01, n in [(0.05, 0.02, 100), (0.2, 0.1, 40)]:
        u = rng.random((2000, n))
        b, c = (u < p10).sum(1), ((u >= p10) & (u < p10 + p01)).sum(1)
        covered = [stats.paired_rate_difference(int(x), int(y), n) for x, y in zip(b, c)]
        share = np.mean([e.ci_low <= p10 - p01 <= e.ci_high for e in covered])
        assert 0.93 <= share <= 0.99, (p10, p01, n, share)


@pytest.mark.parametrize("b,c,n,match", [(3, 4, 5, "at most n"), (-1, 0, 5, "must lie in")])
def test_paired_rate_difference_refuses_impossible_counts(b, c, n, match):
    with pytest.raises(AssayError, match=match):
        stats.paired_rate_difference(b, c, n)


def test_bootstraps_of_a_rate_keep_a_width_where_every_reading_agrees():
    # 0 of 72 attacks succeeded, 12 agents: resampling anything gives [0, 0]; the floor is
    # the Wilson interval of 0 in 72, whose upper end is about 0.05
    zeros, agents = np.zeros(72), np.repeat(np.arange(12), 6)
    floor = wilson(0, 72)
    for e in (clustered_bootstrap(zeros, agents), bootstrap(zeros)):
        assert e.value == 0.0 and e.ci_low == 0.0
        assert e.ci_high == pytest.approx(floor.ci_high) and 0.04 < e.ci_high < 0.06
        assert e.method.endswith("(at least Wilson)")
    # a median or a graded reading is not a rate: left alone
    assert clustered_bootstrap(zeros, agents, stat=np.median).ci_high == 0.0
    graded = clustered_bootstrap(np.full(72, 0.5), agents)
    assert (graded.ci_low, graded.ci_high) == (0.5, 0.5) and "at least" not in graded.method


def test_a_wide_clustered_rate_is_not_narrowed_by_the_floor():
    # whole agents succeed or fail: the cluster bootstrap is far wider than Wilson's interval
    hits, agents = np.repeat([1.0, 0.0] * 6, 6), np.repeat(np.arange(12), 6)
    e, floor = clustered_bootstrap(hits, agents), wilson(36, 72)
    assert e.ci_low < floor.ci_low - 0.1 and e.ci_high > floor.ci_high + 0.1


def test_paired_differences_of_agreeing_pairs_keep_tangos_width():
    # two models that answer the same 48 items about 8 people identically
    x, people = np.repeat([1.0, 0.0], 24), np.repeat(np.arange(8), 6)
    floor = stats.paired_rate_difference(0, 0, 48)
    for e in (stats.paired_difference(x, x, people), paired_bootstrap(x, x),
              stats.seed_cluster_paired(x, x, np.repeat([0, 1], 24), people)):
        assert e.value == 0.0
        assert (e.ci_low, e.ci_high) == pytest.approx((floor.ci_low, floor.ci_high))
        assert e.ci_high > 0.05 and e.method.endswith("(at least Tango)")
    graded = stats.paired_difference(x * 0.5, x * 0.5, people)
    assert (graded.ci_low, graded.ci_high) == (0.0, 0.0)


def test_seed_cluster_paired_resamples_runs_of_pairs():
    # run 0 gains 6 of 12 items, run 1 none: the runs disagree, so the interval (resampling
    # runs) is wider than Tango's, which pools 24 independent pairs
    a = np.array([1.0] * 6 + [0.0] * 6 + [0.0] * 12)
    b = np.zeros(24)
    runs, people = np.repeat([0, 1], 12), np.tile(np.repeat(np.arange(6), 2), 2)
    e = stats.seed_cluster_paired(a, b, runs, people)
    floor = stats.paired_rate_difference(6, 0, 24)
    assert e.value == pytest.approx(0.25)
    assert e.ci_low < floor.ci_low and e.ci_high >= floor.ci_high
    with pytest.raises(AssayError, match="one b per a"):
        stats.seed_cluster_paired(a, b[:5], runs, people)


def test_member_bootstrap_resamples_the_units_pairs_share():
    from itertools import combinations

    from assay.methods.stats import member_bootstrap, wilson

    rng = np.random.default_rng(0)
    pairs = list(combinations(range(12), 2))
    # agreement of a random order with another random order: pairs share outcomes, so the
    # honest interval is wider than Wilson's over 66 "independent" pairs
    truth, guess = rng.normal(size=12), rng.normal(size=12)
    hits = [float((truth[i] > truth[j]) == (guess[i] > guess[j])) for i, j in pairs]
    est = member_bootstrap(hits, pairs, n_boot=2000, seed=1)
    naive = wilson(int(sum(hits)), len(hits))
    assert est.value == pytest.approx(np.mean(hits))
    assert est.ci_high - est.ci_low > 1.5 * (naive.ci_high - naive.ci_low)
    assert est.ci_low <= naive.ci_low and est.ci_high >= naive.ci_high  # never narrower
    # coverage of the chance value 0.5 over repeated random orders (nominal 0.95)
    covered = 0
    for s in range(200):
        r = np.random.default_rng(100 + s)
        t, g = r.normal(size=12), r.normal(size=12)
        h = [float((t[i] > t[j]) == (g[i] > g[j])) for i, j in pairs]
        e = member_bootstrap(h, pairs, n_boot=400, seed=s)
        covered += e.ci_low <= 0.5 <= e.ci_high
    assert covered / 200 > 0.85
    with pytest.raises(AssayError, match="one tuple of members"):
        member_bootstrap([1.0, 0.0], [(0, 1)])
