"""In-context regression and scaling-law fits on tiny settings with known answers."""

import numpy as np
import pytest

from assay.errors import AssayError
from assay.methods.icl import baselines, predict, sample_tasks, squared_error, train_regressor
from assay.methods.scaling import bootstrap_fits, chinchilla, fit_chinchilla
from assay.studies._ladder import smooth_share
from assay.studies.emergence_metric import _edit

TRUE = dict(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.28)


def _runs():
    N = np.repeat([2e4, 5e4, 1e5, 3e5, 1e6], 3)
    D = np.tile([1e6, 3e6, 1e7], 5)
    return N, D


def test_the_fit_recovers_known_parameters_from_noise_free_runs():
    N, D = _runs()
    fit = fit_chinchilla(N, D, chinchilla(N, D, **TRUE))
    for name, value in TRUE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.05), name
    big = np.array([3e6]), np.array([3e7])  # far outside the runs: the law extrapolates
    assert fit.predict(*big)[0] == pytest.approx(chinchilla(*big, **TRUE)[0], rel=1e-3)


def test_noisy_runs_still_predict_a_larger_model_and_resampled_fits_vary():
    N, D = _runs()
    L = chinchilla(N, D, **TRUE) * np.exp(0.003 * np.random.default_rng(0).standard_normal(N.size))
    small = N < N.max()
    fit = fit_chinchilla(N[small], D[small], L[small])
    truth = chinchilla(N[~small], D[~small], **TRUE)
    assert np.abs(fit.predict(N[~small], D[~small]) / truth - 1).max() < 0.02
    fits = bootstrap_fits(N, D, L, n_boot=12, seed=0, start=fit)
    assert len(fits) >= 8
    assert np.std([f.alpha for f in fits]) > 0  # resampling moves the fit


def test_the_fit_rejects_too_few_runs():
    with pytest.raises(AssayError, match="at least 5 runs"):
        fit_chinchilla([1e4, 1e5], [1e6, 1e6], [3.0, 2.5])


def test_baselines_are_exact_where_they_must_be():
    tasks = sample_tasks(50, 12, 3, seed=0)
    preds = baselines(tasks)
    err = {k: squared_error(v, tasks).mean(0) for k, v in preds.items()}
    # noise-free: least squares is exact once it has d points, the others are not
    assert err["least squares"][4:].max() < 1e-12
    assert err["mean"][4:].min() > 0.3 and err["3 nearest neighbours"][4:].min() > 0.1
    assert err["ridge"][-1] < err["one GD step"][-1] < err["mean"][-1]
    assert np.all(preds["least squares"][:, 0] == 0)  # nothing seen: predict zero


def test_a_tiny_transformer_learns_in_context_regression():
    d, k = 2, 10
    model, curve = train_regressor(d, k, steps=600, seed=0, batch_size=64, lr=3e-3,
                                   d_model=32, n_layer=2, n_head=2)
    tasks = sample_tasks(400, k, d, seed=5)
    err = squared_error(predict(model, tasks), tasks).mean(0)
    base = {n: squared_error(p, tasks).mean(0) for n, p in baselines(tasks).items()}
    assert np.mean(curve[-50:]) < 0.5 * np.mean(curve[:50])
    # beats the mean predictor once it has examples, and improves as examples grow
    assert err[3:].mean() < 0.5 * base["mean"][3:].mean()
    assert err[-3:].mean() < 0.5 * err[:2].mean()
    again, _ = train_regressor(d, k, steps=20, seed=0, d_model=32, n_layer=2, n_head=2)
    twice, _ = train_regressor(d, k, steps=20, seed=0, d_model=32, n_layer=2, n_head=2)
    np.testing.assert_array_equal(predict(again, tasks), predict(twice, tasks))  # seeded


def test_addition_metrics_are_computed_correctly():
    assert _edit("kitten", "sitting") == pytest.approx(3 / 7)
    assert _edit("so 123", "so 123") == 0.0 and _edit("", "") == 0.0
    assert _edit("", "abc") == 1.0
    assert smooth_share(np.array([0.0, 0.0, 0.0, 1.0])) == 1.0
    assert smooth_share(np.array([0.0, 0.25, 0.5, 0.75, 1.0])) == pytest.approx(0.25)
    assert smooth_share(np.array([0.5, 0.4, 0.3])) == 0.0  # no rise, no emergence
