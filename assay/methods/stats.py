"""Intervals and tests: the one place every study takes its uncertainty from.

Rates get score intervals (`wilson`, the default) or exact ones (`exact`, Clopper-Pearson).
Anything else gets a percentile bootstrap: `bootstrap` for independent values,
`paired_bootstrap` when two systems were scored on the same items, `clustered_bootstrap`
when values come in correlated groups (several samples per prompt, several prompts per
document). `two_proportion_test` compares two rates. A statistic of several arrays at once
(a gap between two arms, the best of C conditions minus the worst, a clustered standard
error) takes its draws from `resamples`, `cluster_resamples` or `clustered_mean_draws` and
its interval from `from_draws`, so no study resamples by hand.

A percentile bootstrap of 0/1 readings has no width where every reading agrees (a rate of 0,
two arms that never differ), so the bootstraps of a mean of 0/1 values are floored: a rate by
the Wilson interval of its count, a paired difference by Tango's score interval of its
discordant pairs (`paired_rate_difference`). The method name then ends "(at least Wilson)" or
"(at least Tango)"; graded values and other statistics are left alone.

Every function returns an `Estimate` (or a `TestResult` holding one). Bootstraps draw from
`numpy.random.default_rng(seed)`, so the same inputs and seed give identical intervals.
A bootstrap `stat` is a numpy-style reduction: it is called as `stat(x, axis=-1)` on a
(n_boot, n) matrix of resamples when it accepts `axis` (np.mean, np.median, np.std, ...),
and once per resample otherwise (slower, same result).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from assay.errors import AssayError

__all__ = [
    "Estimate", "TestResult", "auroc", "bootstrap", "cluster_resamples", "clustered_auroc",
    "crossed_resamples",
    "clustered_bootstrap", "clustered_mean_draws", "exact", "from_draws", "paired_auroc_gap",
    "paired_bootstrap", "paired_difference", "paired_rate_difference", "rate", "resamples",
    "seed_cluster_bootstrap", "seed_cluster_paired", "seed_cluster_rate", "seed_cluster_resamples",
    "two_proportion_test",
    "wilson",
]

Stat = Callable[..., float]
RATE_METHODS = ("wilson", "exact")


class Estimate(BaseModel):
    """A point estimate with a two-sided confidence interval (NaN where nothing could be
    measured: it survives JSON as NaN, and decision rules read it as inconclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    value: float     # the point estimate on the full data (k/n for rates)
    ci_low: float    # lower end of the interval
    ci_high: float   # upper end of the interval
    n: int           # observations behind it (pairs for paired, all values for clustered)
    method: str      # "wilson", "exact", "bootstrap-percentile", "bootstrap-paired", ...
    level: float = 0.95  # two-sided confidence level of [ci_low, ci_high]

    def __str__(self) -> str:
        extra = "" if self.level == 0.95 else f", {self.level:.0%}"
        return (f"{self.value:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"(n={self.n}, {self.method}{extra})")


class TestResult(BaseModel):
    """A hypothesis test: its statistic, two-sided p-value, and the effect with an interval."""

    __test__ = False  # not a pytest test class, despite the name
    model_config = ConfigDict(frozen=True, extra="forbid")

    statistic: float       # the test statistic (z for the two-proportion test)
    p_value: float         # two-sided p-value under the null of no difference
    method: str            # e.g. "two-proportion-z"
    difference: Estimate   # the effect (rate1 - rate2) with its interval

    def __str__(self) -> str:
        return (f"{self.method}: stat={self.statistic:.3f}, p={self.p_value:.4g}, "
                f"diff {self.difference}")


# ---------------------------------------------------------------- rates


def wilson(k: int, n: int, level: float = 0.95) -> Estimate:
    """Wilson score interval for a rate k/n (no continuity correction).

    Good coverage even for small n and rates near 0 or 1, unlike the Wald interval.
    """
    k, n = _counts(k, n)
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(value=p, ci_low=low, ci_high=high, n=n, method="wilson", level=level)


def exact(k: int, n: int, level: float = 0.95) -> Estimate:
    """Clopper-Pearson interval for a rate k/n: guaranteed coverage, somewhat conservative."""
    k, n = _counts(k, n)
    alpha = 1 - _level(level)
    from scipy.stats import beta as beta_dist  # scipy.stats takes a second to import

    low = 0.0 if k == 0 else float(beta_dist.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta_dist.ppf(1 - alpha / 2, k + 1, n - k))
    return Estimate(value=k / n, ci_low=low, ci_high=high, n=n, method="exact", level=level)


def rate(hits: Sequence[bool], method: str = "wilson", level: float = 0.95) -> Estimate:
    """The rate of True in `hits` with a `wilson` or `exact` interval."""
    if method not in RATE_METHODS:
        raise AssayError(f"unknown rate method {method!r}: use one of {', '.join(RATE_METHODS)}")
    arr = np.asarray(hits)
    if arr.ndim != 1 or arr.size == 0:
        raise AssayError(f"rate needs a non-empty 1-D sequence of bools, got shape {arr.shape}: "
                         "pass one True/False per trial")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise AssayError("rate needs bools (or 0/1), got other values: "
                         "threshold scores into hits first, or use bootstrap for a mean")
    k = int(np.count_nonzero(arr))
    return (wilson if method == "wilson" else exact)(k, int(arr.size), level)


def two_proportion_test(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> TestResult:
    """Pooled two-proportion z-test of k1/n1 against k2/n2.

    The p-value is two-sided, from z = (p1 - p2) / sqrt(p(1-p)(1/n1 + 1/n2)) with p the pooled
    rate (equal to a 2x2 chi-square test without continuity correction). The difference
    p1 - p2 carries a Newcombe hybrid score interval (Newcombe 1998, method 10), built from
    the two Wilson intervals: it stays inside [-1, 1] and keeps its coverage near 0 and 1,
    where the Wald interval collapses. When both rates are 0 or both are 1, z = 0 and p = 1.
    """
    k1, n1 = _counts(k1, n1)
    k2, n2 = _counts(k2, n2)
    w1, w2 = wilson(k1, n1, level), wilson(k2, n2, level)
    p1, p2 = w1.value, w2.value
    d = p1 - p2
    low = d - math.sqrt((p1 - w1.ci_low) ** 2 + (w2.ci_high - p2) ** 2)
    high = d + math.sqrt((w1.ci_high - p1) ** 2 + (p2 - w2.ci_low) ** 2)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = 0.0 if se == 0 else d / se
    p_value = float(math.erfc(abs(z) / math.sqrt(2)))
    diff = Estimate(value=d, ci_low=max(-1.0, low), ci_high=min(1.0, high), n=n1 + n2,
                    method="newcombe", level=level)
    return TestResult(statistic=z, p_value=p_value, method="two-proportion-z", difference=diff)


def paired_rate_difference(b: int, c: int, n: int, level: float = 0.95) -> Estimate:
    """p(x) - p(y) for two 0/1 readings of the same n items, from the discordant counts: ``b``
    items read 1 by x and 0 by y, ``c`` the reverse. Tango's score interval (Tango 1998, Stat.
    Med. 17:891), the inversion of the score test of the difference that McNemar's test
    checks at 0: unlike a percentile bootstrap it keeps a width when no pair differs (about
    +-z^2 / (n + z^2), as Wilson's interval does at a rate of 0). Items are taken as
    independent; callers whose items cluster use it as a floor under a clustered bootstrap.
    """
    b, n = _counts(b, n)
    c, _ = _counts(c, n)
    if b + c > n:
        raise AssayError(f"{b} + {c} discordant pairs out of {n}: give at most n in all")
    z = _z(level)
    d = (b - c) / n

    def score(delta: float) -> float:  # the score statistic at a hypothesised difference
        big_a, big_b = 2 * n, -b - c + (2 * n - b + c) * delta
        big_c = -c * delta * (1 - delta)
        q = (math.sqrt(max(big_b * big_b - 4 * big_a * big_c, 0.0)) - big_b) / (2 * big_a)
        var = n * (2 * q + delta * (1 - delta))
        gap = b - c - n * delta
        return 0.0 if gap == 0 else gap / math.sqrt(var) if var > 0 else math.copysign(math.inf,
                                                                                      gap)

    def edge(outer: float) -> float:  # bisect between d (inside) and outer (+-1)
        if abs(score(outer)) <= z:
            return outer
        inside = d
        for _ in range(60):
            mid = (inside + outer) / 2
            inside, outer = (mid, outer) if abs(score(mid)) <= z else (inside, mid)
        return inside

    return Estimate(value=d, ci_low=edge(-1.0), ci_high=edge(1.0), n=n, method="tango-score",
                    level=level)


# ---------------------------------------------------------------- bootstraps


def bootstrap(values: Sequence[float], stat: Stat = np.mean, n_boot: int = 2000,
              level: float = 0.95, seed: int | None = 0) -> Estimate:
    """Percentile bootstrap interval for stat(values), resampling values independently."""
    x = _values(values, "values")
    _level(level)
    n_boot = _n_boot(n_boot)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))  # (B, n)
    boots = _apply(stat, x[idx])
    return _rate_floor(_percentile(_point(stat, x), boots, x.size, "bootstrap-percentile", level),
                       x, stat, level)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], stat: Stat = np.mean,
                     n_boot: int = 2000, level: float = 0.95, seed: int | None = 0) -> Estimate:
    """Percentile bootstrap interval for stat(a) - stat(b), with a[i] and b[i] resampled together.

    Use it when both systems were scored on the same items: item difficulty cancels, so a
    small consistent difference shows up that two separate intervals would hide.
    """
    xa, xb = _values(a, "a"), _values(b, "b")
    if xa.size != xb.size:
        raise AssayError(f"paired_bootstrap needs a and b of equal length, got {xa.size} and "
                         f"{xb.size}: pair each item's two scores, or use bootstrap on each")
    _level(level)
    n_boot = _n_boot(n_boot)
    idx = np.random.default_rng(seed).integers(0, xa.size, size=(n_boot, xa.size))  # (B, n)
    boots = _apply(stat, xa[idx]) - _apply(stat, xb[idx])
    est = _percentile(_point(stat, xa) - _point(stat, xb), boots, xa.size, "bootstrap-paired",
                      level)
    return _pair_floor(est, xa, xb, level) if stat is np.mean else est


def clustered_bootstrap(values: Sequence[float], clusters: Sequence[Hashable],
                        stat: Stat = np.mean, n_boot: int = 2000, level: float = 0.95,
                        seed: int | None = 0) -> Estimate:
    """Percentile bootstrap interval for stat(values), resampling whole clusters.

    `clusters[i]` is any hashable key naming the group of `values[i]` (a prompt id, a
    document, a seed). Each resample draws as many clusters as there are, with replacement,
    and keeps all their values, so correlation within a cluster widens the interval as it
    should. `n` in the result counts values; at least two clusters are needed.
    """
    x = _values(values, "values")
    keys = list(clusters)
    if len(keys) != x.size:
        raise AssayError(f"clustered_bootstrap needs one cluster key per value, got {len(keys)} "
                         f"keys for {x.size} values: pass clusters aligned with values")
    _level(level)
    n_boot = _n_boot(n_boot)
    codes: dict[Hashable, int] = {}
    try:
        labels = np.fromiter((codes.setdefault(key, len(codes)) for key in keys), int, x.size)
    except TypeError as e:
        raise AssayError(f"clustered_bootstrap needs hashable cluster keys ({e}): "
                         "use ids, strings or tuples") from None
    g = len(codes)
    if g < 2:
        raise AssayError("clustered_bootstrap needs at least 2 clusters, got 1: with one "
                         "cluster there is nothing to resample; use bootstrap instead")
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels, minlength=g)
    members = np.split(order, np.cumsum(sizes)[:-1])  # value indices of each cluster
    picks = np.random.default_rng(seed).integers(0, g, size=(n_boot, g))  # (B, G)
    if (sizes == sizes[0]).all():
        idx = np.stack(members)[picks].reshape(n_boot, -1)  # (B, G*m)
        boots = _apply(stat, x[idx])
    elif stat is np.mean:
        counts = np.bincount((picks + g * np.arange(n_boot)[:, None]).ravel(),
                             minlength=n_boot * g).reshape(n_boot, g)  # (B, G) draws per cluster
        sums = np.bincount(labels, weights=x, minlength=g)
        boots = (counts @ sums) / (counts @ sizes)
    else:
        boots = np.array([_point(stat, x[np.concatenate([members[c] for c in row])])
                          for row in picks])
    return _rate_floor(_percentile(_point(stat, x), boots, x.size, "bootstrap-clustered", level),
                       x, stat, level)


def resamples(n: int, n_boot: int, seed: int | None = 0) -> list[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``n`` items, as index arrays (with replacement).

    For statistics that take more than one array, or that can be undefined on a resample:
    compute them on each index array and pass the draws to `from_draws`.
    """
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(n_boot)]


def cluster_resamples(clusters: Sequence[Hashable], n_boot: int, seed: int | None = 0
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_boot`` resamples that draw whole clusters with replacement, each as (row indices,
    the drawn cluster's position in the draw for every row). The second array labels a
    cluster drawn twice as two clusters, which a statistic that is itself clustered (a
    clustered standard error) needs. Clusters are ordered by their sorted key."""
    names, codes = np.unique(np.asarray(list(clusters)), return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(len(names))]
    if len(members) < 2:
        raise AssayError(f"a cluster bootstrap needs at least 2 clusters, got {len(members)}: "
                         "ask about more people, agents or tasks")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        out.append((np.concatenate([members[c] for c in pick]),
                    np.concatenate([np.full(members[c].size, k) for k, c in enumerate(pick)])))
    return out


def crossed_resamples(runs: int, n: int, n_boot: int, seed: int | None = 0
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_boot`` bootstrap draws of (training runs, items) for a crossed design, where every
    run is scored on the same ``n`` items: runs and items are each resampled with
    replacement (with one run, only the items). Index the (runs, ..., items) scores with
    both arrays and pass each draw's statistic to `from_draws`."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, runs, runs) if runs > 1 else np.zeros(1, int),
             rng.integers(0, n, n)) for _ in range(n_boot)]


def seed_cluster_resamples(seeds: Sequence[Hashable], clusters: Sequence[Hashable],
                           n_boot: int, seed: int | None = 0) -> list[np.ndarray]:
    """``n_boot`` two-level resamples of rows that each come from one training run
    (``seeds[i]``) and one cluster within it (``clusters[i]``: the person, agent or task).
    Each draw picks as many runs as there are, with replacement, then within each picked run
    as many of its clusters as it has, with replacement, and returns the rows drawn (indices
    into the inputs). A verdict then carries the variance between training runs as well as
    between items; with one run it is a cluster bootstrap. Compute a statistic on each index
    array and pass the draws to `from_draws`."""
    runs = np.asarray(list(seeds))
    keys = np.asarray(list(clusters))
    if runs.size != keys.size:
        raise AssayError(f"seed_cluster_resamples needs one seed and one cluster per row, got "
                         f"{runs.size} seeds and {keys.size} clusters")
    if runs.size == 0:
        raise AssayError("seed_cluster_resamples needs at least one row")
    groups = []  # per run: the row indices of each of its clusters
    for r in np.unique(runs):
        rows = np.flatnonzero(runs == r)
        names, codes = np.unique(keys[rows], return_inverse=True)
        groups.append([rows[codes == g] for g in range(len(names))])
    if len(groups) == 1 and len(groups[0]) < 2:
        raise AssayError("a seed-and-cluster bootstrap needs two training runs or two clusters, "
                         "got one of each: train another seed or ask about more people")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        drawn = []
        for r in rng.integers(0, len(groups), len(groups)):
            members = groups[r]
            drawn.extend(members[c] for c in rng.integers(0, len(members), len(members)))
        out.append(np.concatenate(drawn))
    return out


def seed_cluster_bootstrap(values: Sequence[float], seeds: Sequence[Hashable],
                           clusters: Sequence[Hashable], stat: Stat = np.mean,
                           n_boot: int = 2000, level: float = 0.95,
                           seed: int | None = 0) -> Estimate:
    """stat(values) pooled over training runs, with an interval that resamples runs, then
    clusters within each run (`seed_cluster_resamples`). For a paired comparison pass each
    item's difference between the two arms."""
    x = _values(values, "values")
    _level(level)
    draws = [_point(stat, x[idx]) for idx in seed_cluster_resamples(seeds, clusters,
                                                                    _n_boot(n_boot), seed)]
    return from_draws(_point(stat, x), draws, x.size, "bootstrap-seeds-then-clusters", level)


def seed_cluster_paired(a: Sequence[float], b: Sequence[float], seeds: Sequence[Hashable],
                        clusters: Sequence[Hashable], n_boot: int = 4000, level: float = 0.95,
                        seed: int | None = 0) -> Estimate:
    """mean(a) - mean(b) pooled over training runs, where row i of ``a`` and of ``b`` is one
    item (about ``clusters[i]``) measured on two models of run ``seeds[i]`` (a model the study
    does not train is the same in every run). Pairs stay within their run; the interval
    resamples runs, then clusters within each (`seed_cluster_bootstrap`), and for 0/1
    readings is never narrower than Tango's interval of the pooled pairs."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise AssayError(f"seed_cluster_paired needs one b per a: got {x.size} and {y.size}")
    boot = seed_cluster_bootstrap(x - y, seeds, clusters, n_boot=n_boot, level=level, seed=seed)
    return _pair_floor(boot, x, y, level)


def seed_cluster_rate(hits: Mapping[Hashable, Sequence[float]], clusters: Sequence[Hashable],
                      unit: str = "clusters", seed: int | None = 0) -> Estimate:
    """A 0/1 rate pooled over training runs (``hits[run]``: one value per row of
    ``clusters``, the same rows in every run), its interval resampling runs, then clusters
    within each run (`seed_cluster_bootstrap`), and never narrower than the Wilson interval
    of the pooled count: a percentile bootstrap of a rate at 0 or 1 has no width."""
    runs = list(hits)
    x = np.concatenate([np.asarray(hits[r], dtype=float) for r in runs])
    keys = list(clusters)
    boot = seed_cluster_bootstrap(x, np.repeat(np.arange(len(runs)), len(keys)),
                                  keys * len(runs), seed=seed)
    boot = boot.model_copy(update={"n": x.size,
                                   "method": f"bootstrap over training seeds, then {unit}"})
    return _widened(boot, wilson(int(x.sum()), x.size), "Wilson")


def clustered_mean_draws(values: np.ndarray, clusters: np.ndarray, stat: Callable,
                         n_boot: int = 1000, seed: int | None = 0) -> np.ndarray:
    """Bootstrap draws of ``stat(means)``, for C conditions measured on the same N items.

    ``values`` is (C, N); ``clusters`` gives each item's cluster as an integer code 0..G-1.
    Each draw resamples whole clusters, the same clusters for every condition, and takes
    the (B, C) matrix of per-condition means; ``stat`` maps it to the (B,) statistic (the
    best condition minus the worst, one condition's mean, ...). Pass the draws to
    `from_draws`.
    """
    g = int(clusters.max()) + 1
    if g < 2:
        raise AssayError("a cluster bootstrap needs at least 2 clusters, got 1: ask about "
                         "more people, agents or tasks")
    sums = np.stack([np.bincount(clusters, weights=v, minlength=g) for v in values])  # (C, G)
    sizes = np.bincount(clusters, minlength=g)
    picks = np.random.default_rng(seed).integers(0, g, size=(n_boot, g))
    counts = np.zeros((n_boot, g))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1)
    means = (counts @ sums.T) / (counts @ sizes)[:, None]  # (B, C)
    return stat(means)


def from_draws(point: float, draws: Sequence[float], n: int,
               method: str = "bootstrap-clustered", level: float = 0.95) -> Estimate:
    """A percentile interval from bootstrap draws the caller computed (`resamples`,
    `cluster_resamples`, `clustered_mean_draws`). NaN draws (a statistic undefined on that
    resample) are dropped; with none left the interval is NaN, which rules read as
    inconclusive. The interval is widened to contain ``point`` when every draw falls on one
    side of it, as happens for a maximum or minimum of noisy means."""
    _level(level)
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return Estimate(value=float(point), ci_low=math.nan, ci_high=math.nan, n=n,
                        method=method, level=level)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return Estimate(value=float(point), ci_low=float(min(lo, point)),
                    ci_high=float(max(hi, point)), n=n, method=method, level=level)


def member_bootstrap(values: Sequence[float], members: Sequence[Sequence[Hashable]],
                     n_boot: int = 2000, seed: int | None = 0, level: float = 0.95) -> Estimate:
    """The mean of a value read on tuples of units (a comparison of two outcomes, a triple of
    them), resampling the units: each draw takes the units with replacement and averages the
    tuples all of whose members were drawn, weighted by how often each member was drawn
    (the bootstrap of a U-statistic). Tuples share members, so they are not independent
    draws; a mean of 0/1 values is never narrower than Wilson's interval of the count."""
    v = _values(values, "values")
    rows = [tuple(m) for m in members]
    if len(rows) != v.size or not rows or len({len(r) for r in rows}) != 1:
        raise AssayError("member_bootstrap needs one tuple of members, all the same length, "
                         "per value")
    units = {u: i for i, u in enumerate(sorted({u for r in rows for u in r}, key=str))}
    index = np.array([[units[u] for u in r] for r in rows])
    rng = np.random.default_rng(seed)
    n = _n_boot(n_boot)
    draws = np.empty(n)
    for b in range(n):
        counts = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))
        w = counts[index].prod(1).astype(float)
        draws[b] = (w * v).sum() / w.sum() if w.sum() else np.nan
    est = from_draws(float(v.mean()), draws, v.size, method="bootstrap over tuple members",
                     level=level)
    return _rate_floor(est, v, np.mean, level)


def auroc(scores: Sequence[float], labels: Sequence[bool], n_boot: int = 2000,
          level: float = 0.95, seed: int | None = 0) -> Estimate:
    """Area under the ROC curve of ``scores`` for ``labels`` (True = positive), with a
    stratified percentile bootstrap interval (positives and negatives resampled apart).

    Ties count one half (the Mann-Whitney form). Needs at least one positive and one negative.
    """
    s = _values(scores, "scores")
    y = np.asarray(labels, dtype=bool)
    if y.shape != s.shape:
        raise AssayError(f"auroc needs one label per score, got {y.size} labels for {s.size} scores")
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise AssayError(f"auroc needs positives and negatives, got {pos.size} and {neg.size}")
    _level(level)
    n_boot = _n_boot(n_boot)

    def area(p: np.ndarray, n: np.ndarray) -> np.ndarray:  # (B, P), (B, N) -> (B,)
        greater = (p[:, :, None] > n[:, None, :]).mean((1, 2))
        ties = (p[:, :, None] == n[:, None, :]).mean((1, 2))
        return greater + 0.5 * ties

    rng = np.random.default_rng(seed)
    value = float(area(pos[None], neg[None])[0])
    boots = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (pos.size * neg.size))  # bound the (B, P, N) comparison memory
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        p = pos[rng.integers(0, pos.size, size=(b, pos.size))]
        n = neg[rng.integers(0, neg.size, size=(b, neg.size))]
        boots[start:start + b] = area(p, n)
    return _percentile(value, boots, s.size, "auroc-bootstrap-stratified", level)


def paired_difference(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable],
                      level: float = 0.95, n_boot: int = 4000, seed: int | None = 0) -> Estimate:
    """mean(a) - mean(b) when item i of ``a`` and of ``b`` is the same item measured two ways
    (an attacked and a plain request, a model before and after): a bootstrap that draws
    whole clusters (the agent or person the item is about), the same draw for both, so what
    the pair shares cancels. The clustered, paired counterpart of McNemar's test; for 0/1
    readings never narrower than Tango's interval of the pairs. With a single cluster there
    is nothing to resample: the interval is NaN (read as inconclusive)."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise AssayError(f"paired_difference needs one b per a: got {x.size} and {y.size}")
    _level(level)
    _, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    if codes.size != x.size:
        raise AssayError(f"give one cluster per pair: {codes.size} clusters for {x.size} pairs")
    if codes.max(initial=0) < 1:  # one cluster: nothing to resample, no interval (inconclusive)
        draws = np.array([])
    else:
        draws = clustered_mean_draws(np.stack([x, y]), codes, lambda m: m[:, 0] - m[:, 1],
                                     n_boot=_n_boot(n_boot), seed=seed)
    return _pair_floor(from_draws(float(x.mean() - y.mean()), draws, x.size,
                                  "paired-bootstrap-clustered", level), x, y, level)


def _area(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC of positives over negatives (ties one half), by ranks: O((P + N) log N)."""
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    return float((below + 0.5 * (upto - below)).mean() / neg.size)


def _stratified_cluster_picks(labels: np.ndarray, clusters: Sequence[Hashable], n_boot: int,
                              seed: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_boot`` (positive rows, negative rows) resamples: whole clusters drawn with
    replacement among the positives and, apart, among the negatives."""
    keys = np.asarray([str(c) for c in clusters])
    if keys.shape != labels.shape:
        raise AssayError(f"give one cluster per score: {keys.size} clusters for {labels.size} "
                         "scores")
    rng = np.random.default_rng(seed)
    sides = []
    for side in (labels, ~labels):
        names, codes = np.unique(keys[side], return_inverse=True)
        rows = np.flatnonzero(side)
        sides.append([rows[codes == g] for g in range(len(names))])
    if len(sides[0]) < 2:
        raise AssayError(f"a cluster bootstrap needs at least 2 clusters of positives, got "
                         f"{len(sides[0])}: mark examples from more agents or people")
    out = []
    for _ in range(n_boot):
        pos, neg = (np.concatenate([m[c] for c in rng.integers(0, len(m), len(m))])
                    for m in sides)
        out.append((pos, neg))
    return out


def clustered_auroc(scores: Sequence[float], labels: Sequence[bool],
                    clusters: Sequence[Hashable], n_boot: int = 1000, level: float = 0.95,
                    seed: int | None = 0) -> Estimate:
    """`auroc` with an interval that resamples whole clusters (the agent or person a marked
    example is about) among the positives and, apart, among the negatives. Give each row
    its own cluster where rows are independent."""
    s = _values(scores, "scores")
    y = np.asarray(labels, dtype=bool)
    if y.shape != s.shape or y.all() or not y.any():
        raise AssayError("clustered_auroc needs one label per score, with positives and negatives")
    draws = [_area(s[p], s[n]) for p, n in _stratified_cluster_picks(y, clusters, n_boot, seed)]
    return from_draws(_area(s[y], s[~y]), draws, s.size, "auroc-bootstrap-clustered", level)


def paired_auroc_gap(scores_a: Sequence[float], scores_b: Sequence[float],
                     labels: Sequence[bool], clusters: Sequence[Hashable], n_boot: int = 1000,
                     level: float = 0.95, seed: int | None = 0) -> Estimate:
    """AUROC of arm a minus AUROC of arm b, when row i of both arms is the same example (or
    its paired twin) scored two ways: each resample draws the same clusters for both arms,
    so what the two arms share cancels out of the interval."""
    a, b = _values(scores_a, "scores_a"), _values(scores_b, "scores_b")
    y = np.asarray(labels, dtype=bool)
    if not (a.shape == b.shape == y.shape) or y.all() or not y.any():
        raise AssayError("paired_auroc_gap needs two score arrays and labels of one length, "
                         "with positives and negatives")
    draws = [_area(a[p], a[n]) - _area(b[p], b[n])
             for p, n in _stratified_cluster_picks(y, clusters, n_boot, seed)]
    point = _area(a[y], a[~y]) - _area(b[y], b[~y])
    return from_draws(point, draws, a.size, "paired-auroc-bootstrap-clustered", level)


# ---------------------------------------------------------------- helpers


def _binary(*arrays: np.ndarray) -> bool:
    return all(np.isin(x, (0.0, 1.0)).all() for x in arrays)


def _widened(est: Estimate, floor: Estimate, name: str) -> Estimate:
    """``est`` with its interval stretched to contain ``floor``'s (NaN intervals stay NaN)."""
    if not (math.isfinite(est.ci_low) and math.isfinite(est.ci_high)):
        return est
    return est.model_copy(update={"ci_low": min(est.ci_low, floor.ci_low),
                                  "ci_high": max(est.ci_high, floor.ci_high),
                                  "method": f"{est.method} (at least {name})"})


def _rate_floor(est: Estimate, x: np.ndarray, stat: Stat, level: float) -> Estimate:
    """A bootstrap of the mean of 0/1 values, never narrower than Wilson's interval."""
    if stat is not np.mean or not _binary(x):
        return est
    return _widened(est, wilson(int(x.sum()), x.size, level), "Wilson")


def _pair_floor(est: Estimate, x: np.ndarray, y: np.ndarray, level: float) -> Estimate:
    """A bootstrap of mean(x - y) over 0/1 pairs, never narrower than Tango's interval."""
    if not _binary(x, y):
        return est
    floor = paired_rate_difference(int(((x == 1) & (y == 0)).sum()),
                                   int(((x == 0) & (y == 1)).sum()), x.size, level)
    return _widened(est, floor, "Tango")


def _counts(k: int, n: int) -> tuple[int, int]:
    try:
        k, n = operator.index(k), operator.index(n)
    except TypeError:
        raise AssayError(f"counts must be integers, got k={k!r}, n={n!r}: pass whole numbers of "
                         "successes and trials") from None
    if n <= 0:
        raise AssayError(f"need at least one trial, got n={n}: a rate of nothing has no interval")
    if not 0 <= k <= n:
        raise AssayError(f"successes k={k} must lie in 0..n={n}: check that k counts successes "
                         "among the n trials")
    return k, n


def _level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise AssayError(f"confidence level must be strictly between 0 and 1, got {level!r}: "
                         "use e.g. 0.95 for a 95% interval")
    return float(level)


def _z(level: float) -> float:
    from scipy import special

    return float(special.ndtri(1 - (1 - _level(level)) / 2))


def _n_boot(n_boot: int) -> int:
    try:
        count = operator.index(n_boot)
    except TypeError:
        count = 0
    if count < 1:
        raise AssayError(f"n_boot must be a positive integer, got {n_boot!r}: 2000 is usual")
    return count


def _values(values: Sequence[float], name: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise AssayError(f"{name} must be numbers, got {type(values).__name__}: "
                         "pass a 1-D sequence of floats") from None
    if x.ndim != 1 or x.size == 0:
        raise AssayError(f"{name} must be a non-empty 1-D sequence, got shape {x.shape}: "
                         "pass one number per item")
    if not np.isfinite(x).all():
        raise AssayError(f"{name} contains NaN or inf at {int((~np.isfinite(x)).sum())} "
                         "positions: drop or impute them before computing an interval")
    return x


def _point(stat: Stat, x: np.ndarray) -> float:
    out = np.asarray(stat(x))
    if out.size != 1:
        raise AssayError(f"stat must reduce a 1-D array to one number, got shape {out.shape}: "
                         "pass a reduction such as np.mean or np.median")
    return float(out.reshape(()))


def _apply(stat: Stat, samples: np.ndarray) -> np.ndarray:
    """stat over each row of a (B, n) matrix: vectorised when stat takes `axis`."""
    try:
        out = np.asarray(stat(samples, axis=-1), dtype=float)
    except TypeError:  # stat has no `axis`: one call per resample
        return np.array([_point(stat, row) for row in samples])
    if out.shape != samples.shape[:1]:
        raise AssayError(f"stat(x, axis=-1) returned shape {out.shape} for {samples.shape[0]} "
                         "resamples: pass a reduction that gives one number per row")
    return out


def _percentile(value: float, boots: np.ndarray, n: int, method: str, level: float) -> Estimate:
    alpha = 1 - level
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Estimate(value=value, ci_low=float(low), ci_high=float(high), n=n, method=method,
                    level=level)
