"""The count-or-rate fit of backdoor-poison-count recovers a planted dependence on synthetic
attack successes, and its decision rule reaches each status from them."""

import numpy as np
import pytest

from assay.errors import AssayError
from assay.methods.backdoors import count_rate_fit
from assay.studies.backdoor_count import Config, rule

COUNTS, SIZES, SEEDS, REQUESTS = (1, 3, 10, 30, 100), (300, 1000), 2, 48
CLUSTERS = [f"agent-{i % 12}" for i in range(REQUESTS)]  # the quick grid's shape


def _cells(logit, seed=0):
    rng = np.random.default_rng(seed)
    p = lambda c, n: 1 / (1 + np.exp(-logit(c, n)))  # noqa: E731
    return {(c, n): rng.random((SEEDS, REQUESTS)) < p(c, n) for c in COUNTS for n in SIZES}


def _status(share):
    metrics = {"asr_strongest_poisoning": _working, "rate_share": share}
    return rule(Config()).status(metrics)


_working = None


@pytest.fixture(autouse=True)
def _strong_trigger():
    global _working
    from assay.methods.stats import wilson
    _working = wilson(95, 100)


PLANTED = {  # logit of attack success; the rate share each plants
    "count": (lambda c, n: -3 + 1.2 * np.log(c), 0.0, "supported"),
    "halfway": (lambda c, n: 2 + 1.2 * np.log(c) - 0.6 * np.log(n), 0.5, "inconclusive"),
    "rate": (lambda c, n: 5 + 1.2 * np.log(c / (n + c)), 1.0, "not supported"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_the_fit_recovers_a_planted_dependence_and_reaches_its_status(planted):
    logit, truth, expected = PLANTED[planted]
    fits = [count_rate_fit(_cells(logit, seed), CLUSTERS, n_boot=300, seed=seed)
            for seed in range(10)]
    values = np.array([f.value for f in fits])
    assert abs(values.mean() - truth) < 0.1  # measured: -0.01, 0.50, 0.99 over 30 draws
    assert sum(f.ci_low < truth < f.ci_high for f in fits) >= 8  # measured coverage 0.97
    # measured over 30 draws: count 0.87, halfway 0.97, rate 0.90 read their status
    assert sum(_status(f) == expected for f in fits) >= 8


def test_a_flat_dependence_is_inconclusive():
    flat = count_rate_fit(_cells(lambda c, n: 0 * c), CLUSTERS)  # no rise with the count
    assert np.isnan(flat.value) or flat.ci_high - flat.ci_low > 2  # the share is undefined
    assert _status(flat) == "inconclusive"
    never = {k: np.zeros_like(v) for k, v in _cells(lambda c, n: 0 * c).items()}
    assert np.isnan(count_rate_fit(never, CLUSTERS).value)


def test_seeds_are_resampled_as_the_outer_unit():
    # two training seeds that disagree widen the interval over one seed's table
    rng = np.random.default_rng(0)
    p = lambda c, n, s: 1 / (1 + np.exp(-(-3 + 1.2 * np.log(c) - s * 0.8 * np.log(n / 300))))  # noqa: E731
    cells = {(c, n): np.stack([rng.random(REQUESTS) < p(c, n, s) for s in (0, 1)])
             for c in COUNTS for n in SIZES}
    both = count_rate_fit(cells, CLUSTERS)
    one = count_rate_fit({k: v[:1] for k, v in cells.items()}, CLUSTERS)
    assert both.ci_high - both.ci_low > one.ci_high - one.ci_low


def test_bad_tables_are_clear_errors():
    cells = _cells(lambda c, n: np.log(c))
    with pytest.raises(AssayError, match="poisoned cells"):
        count_rate_fit({**cells, (0, 300): cells[1, 300]}, CLUSTERS)
    with pytest.raises(AssayError, match="two or more clean sizes"):
        count_rate_fit({k: v for k, v in cells.items() if k[1] == 300}, CLUSTERS)
    with pytest.raises(AssayError, match="one cluster per request"):
        count_rate_fit(cells, CLUSTERS[:-1])
