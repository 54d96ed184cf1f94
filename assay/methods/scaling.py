"""Scaling-law fits: final loss as a function of parameters N and training tokens D.

The Chinchilla form (Hoffmann et al. 2022, arXiv 2203.15556) is

    L(N, D) = E + A / N^alpha + B / D^beta,

fitted as the paper does: the Huber loss (delta 1e-3) between log L and the log of the
form, written as a log-sum-exp of ``(a - alpha log N, b - beta log D, e)`` with ``A = e^a``,
``B = e^b``, ``E = e^e``, minimised with L-BFGS from a grid of starting points, keeping the
best. `bootstrap_fits` refits on runs resampled with replacement for intervals (Besiroglu
et al. 2024, arXiv 2404.10102, who showed how much the intervals matter).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from assay.errors import AssayError

__all__ = ["ScalingFit", "bootstrap_fits", "chinchilla", "fit_chinchilla"]

PARAMS = ("E", "A", "B", "alpha", "beta")
# Exponents stay in [0, 3], so a fit cannot buy a lower objective with a law that falls
# with less data or explodes with size; a, b, e (logs of A, B, E) in generous ranges.
BOUNDS = [(-20.0, 60.0), (-20.0, 60.0), (-10.0, 5.0), (0.0, 3.0), (0.0, 3.0)]
# L-BFGS starting points: every combination (162 starts) of
GRID = {"a": (2, 8, 15), "b": (2, 8, 15), "e": (-1, 0.5), "alpha": (0.2, 0.6, 1.2),
        "beta": (0.2, 0.6, 1.2)}


@dataclass(frozen=True)
class ScalingFit:
    E: float       # irreducible loss
    A: float
    B: float
    alpha: float   # exponent in parameters
    beta: float    # exponent in tokens
    objective: float  # the summed Huber loss at the optimum

    def predict(self, N, D) -> np.ndarray:
        return chinchilla(N, D, self.E, self.A, self.B, self.alpha, self.beta)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def chinchilla(N, D, E: float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return E + A / N ** alpha + B / D ** beta


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def fit_chinchilla(N: Sequence[float], D: Sequence[float], L: Sequence[float],
                   delta: float = 1e-3, grid: dict[str, Sequence[float]] | None = None
                   ) -> ScalingFit:
    """The best fit over a grid of L-BFGS starts (``grid`` maps a, b, e, alpha, beta to the
    values tried; the default `GRID` spans the paper's ranges more coarsely)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    logN, logD, logL = (np.log(np.asarray(v, dtype=float)) for v in (N, D, L))
    if not (logN.size == logD.size == logL.size) or logN.size < 5:
        raise AssayError(f"a Chinchilla fit needs at least 5 runs with N, D and L each; got "
                         f"{logN.size}, {logD.size} and {logL.size}")
    grid = grid or GRID

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = p
        terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])  # (3, R)
        pred = logsumexp(terms, axis=0)
        r = pred - logL
        w = np.exp(terms - pred)  # softmax weights: d pred / d term
        dh = np.where(np.abs(r) <= delta, r, delta * np.sign(r))
        grad = np.array([(dh * w[0]).sum(), (dh * w[1]).sum(), (dh * w[2]).sum(),
                         -(dh * w[0] * logN).sum(), -(dh * w[1] * logD).sum()])
        return float(_huber(r, delta).sum()), grad

    best = None
    for start in itertools.product(*(grid[k] for k in ("a", "b", "e", "alpha", "beta"))):
        res = minimize(objective, np.array(start, dtype=float), jac=True, method="L-BFGS-B",
                       bounds=BOUNDS)
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = best.x
    return ScalingFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                      alpha=float(alpha), beta=float(beta), objective=float(best.fun))


def bootstrap_fits(N, D, L, n_boot: int = 100, seed: int = 0,
                   start: ScalingFit | None = None) -> list[ScalingFit]:
    """Fits to ``n_boot`` resamples of the runs (with replacement). With ``start`` (the fit to
    all runs), each refit starts from it and from neighbours of it instead of the full grid."""
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    rng = np.random.default_rng(seed)
    grid = None
    if start is not None:
        a, b, e = np.log(start.A), np.log(start.B), np.log(start.E)
        grid = {"a": (a, a + 2), "b": (b, b + 2), "e": (e,), "alpha": (start.alpha, start.alpha * 1.5),
                "beta": (start.beta, start.beta * 1.5)}
    fits = []
    for _ in range(n_boot):
        idx = rng.integers(0, N.size, N.size)
        if len(set(zip(N[idx], D[idx]))) < 5:  # too few distinct runs to fit five parameters
            continue
        fits.append(fit_chinchilla(N[idx], D[idx], L[idx], grid=grid))
    return fits
