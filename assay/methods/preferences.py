"""Preferences between outcomes: utility models fitted to forced choices, and the ways of
aggregating many annotators' preferences that a fitted reward model can stand for (4.1).

Everything here reads a matrix ``p`` of pairwise preference probabilities,
``p[i, j] = P(i is chosen over j)`` with ``p[i, j] + p[j, i] = 1`` off the diagonal, or raw
choices ``(i, j, chose_i)``.

- `thurstonian_fit`: the Thurstonian utility model of Mazeika et al. (2025, "Utility
  Engineering", arXiv 2502.08640): outcome i has utility N(mean_i, var_i), and
  ``P(i > j) = Phi((mean_i - mean_j) / sqrt(var_i + var_j))``, fitted by maximum likelihood.
- `bradley_terry`: a linear reward model on outcome features trained with the
  Bradley-Terry loss, the loss reward models in RLHF are trained with.
- `borda`, `condorcet_winner`, `copeland`: the aggregations Siththaranjan, Laidlaw and
  Hadfield-Menell (2024, arXiv 2312.08358) compare a learned reward with.
- `cycle_share`: the share of outcome triples whose majority preferences form a cycle.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_ndtr
from scipy.stats import kendalltau
from sklearn.linear_model import LogisticRegression


def choice_probabilities(utilities: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(K,) utilities -> (K, K) Bradley-Terry choice probabilities sigma(scale (u_i - u_j))."""
    u = np.asarray(utilities, dtype=float)
    p = expit(scale * (u[:, None] - u[None, :]))
    np.fill_diagonal(p, 0.5)
    return p


def mixture(groups: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The pooled choice probabilities when an annotator from group g answers with
    probability weights[g]: the group a choice came from is the hidden context."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) != len(groups) or (w < 0).any() or not np.isclose(w.sum(), 1):
        raise ValueError("weights must be one non-negative number per group, summing to 1")
    return np.tensordot(w, np.stack(groups), axes=1)


def sample_choices(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` comparisons of uniformly drawn distinct pairs: rows (i, j, 1 if i chosen)."""
    k = len(p)
    i = rng.integers(0, k, n)
    j = (i + rng.integers(1, k, n)) % k
    return np.column_stack([i, j, (rng.random(n) < p[i, j]).astype(int)])


def empirical(choices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(wins, totals), both (K, K): wins[i, j] = times i was chosen over j."""
    wins = np.zeros((k, k))
    totals = np.zeros((k, k))
    i, j, y = choices[:, 0], choices[:, 1], choices[:, 2]
    np.add.at(wins, (i, j), y)
    np.add.at(wins, (j, i), 1 - y)
    np.add.at(totals, (i, j), 1)
    np.add.at(totals, (j, i), 1)
    return wins, totals


def _check(choices: np.ndarray, k: int) -> None:
    c = np.asarray(choices)
    if (c.ndim != 2 or c.shape[1] != 3 or len(c) == 0 or c[:, :2].min() < 0
            or c[:, :2].max() >= k or (c[:, 0] == c[:, 1]).any() or not np.isin(c[:, 2], (0, 1)).all()):
        raise ValueError(f"choices must be rows (i, j, 1 if i was chosen else 0) with i != j "
                         f"outcomes in 0..{k - 1}")


def borda(p: np.ndarray) -> np.ndarray:
    """Borda score of each outcome: the expected number of other outcomes it beats."""
    q = np.array(p, dtype=float)
    np.fill_diagonal(q, 0.0)
    return q.sum(1)


def copeland(p: np.ndarray) -> np.ndarray:
    """Copeland score: pairwise majority wins (a tie counts a half)."""
    q = np.where(np.isclose(p, 0.5), 0.5, (p > 0.5).astype(float))
    np.fill_diagonal(q, 0.0)
    return q.sum(1)


def condorcet_winner(p: np.ndarray) -> int | None:
    """The outcome a strict majority prefers to every other, or None when there is none."""
    k = len(p)
    for i in range(k):
        if all(p[i, j] > 0.5 for j in range(k) if j != i):
            return i
    return None


def cycle_share(p: np.ndarray) -> float:
    """Share of triples (i, j, k) whose majority preferences are intransitive (a 3-cycle)."""
    k = len(p)
    triples = list(combinations(range(k), 3))
    if not triples:
        return 0.0
    beats = p > 0.5
    cycles = sum((beats[a, b] and beats[b, c] and beats[c, a]) or
                 (beats[b, a] and beats[c, b] and beats[a, c]) for a, b, c in triples)
    return cycles / len(triples)


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau between two score vectors (1: same order)."""
    tau = kendalltau(a, b).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def bradley_terry(choices: np.ndarray, features: np.ndarray, c: float = 1e4) -> np.ndarray:
    """A linear reward ``r = features @ w`` fitted with the Bradley-Terry loss
    (logistic regression of the choice on the feature difference; each comparison enters
    in both orders, so no intercept is needed). Returns the reward of every outcome.
    ``features`` (K, F); with the identity (one-hot outcomes) it is the tabular BT model."""
    f = np.asarray(features, dtype=float)
    i, j, y = choices[:, 0], choices[:, 1], choices[:, 2]
    _check(choices, len(f))
    x = np.concatenate([f[i] - f[j], f[j] - f[i]])
    t = np.concatenate([y, 1 - y])
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000)
    model.fit(x, t)
    return f @ model.coef_[0]


def thurstonian_fit(choices: np.ndarray, k: int, iters: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood Thurstonian utilities from forced choices: (means, variances).

    Means are centred and variances are relative (the model is invariant to a shift of the
    means and a common rescaling); a weak prior keeps log-variances near 0 so an outcome
    that always wins stays finite.
    """
    _check(choices, k)
    wins, totals = empirical(choices, k)
    pairs = [(a, b) for a, b in combinations(range(k), 2) if totals[a, b] > 0]
    if not pairs:
        raise ValueError("no comparisons to fit")
    ia = np.array([a for a, _ in pairs])
    ib = np.array([b for _, b in pairs])
    w_ab, w_ba = wins[ia, ib], wins[ib, ia]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        mean, logvar = theta[:k], theta[k:]
        var = np.exp(logvar)
        s = np.sqrt(var[ia] + var[ib])
        z = (mean[ia] - mean[ib]) / s
        lp, lq = log_ndtr(z), log_ndtr(-z)
        nll = -(w_ab * lp + w_ba * lq).sum() + 0.5 * (logvar ** 2).sum() + 0.5 * mean.sum() ** 2
        # d nll / d z = -(w_ab * phi/Phi(z) - w_ba * phi/Phi(-z))
        log_phi = -0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)
        dz = -(w_ab * np.exp(log_phi - lp) - w_ba * np.exp(log_phi - lq))  # stable at large |z|
        g_mean = np.zeros(k)
        np.add.at(g_mean, ia, dz / s)
        np.add.at(g_mean, ib, -dz / s)
        g_mean += mean.sum()
        ds = dz * (-z / s)                      # d nll / d s
        dvar = ds / (2 * s)                     # d s / d var_a = 1 / (2 s)
        g_logvar = np.zeros(k)
        np.add.at(g_logvar, ia, dvar * var[ia])
        np.add.at(g_logvar, ib, dvar * var[ib])
        g_logvar += logvar
        return float(nll), np.concatenate([g_mean, g_logvar])

    res = minimize(loss, np.zeros(2 * k), jac=True, method="L-BFGS-B", options={"maxiter": iters})
    mean = res.x[:k] - res.x[:k].mean()
    return mean, np.exp(res.x[k:])


def thurstonian_probabilities(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """(K, K) choice probabilities of a Thurstonian model."""
    from scipy.stats import norm

    p = norm.cdf((mean[:, None] - mean[None, :]) / np.sqrt(var[:, None] + var[None, :]))
    np.fill_diagonal(p, 0.5)
    return p


def holdout_accuracy(p_model: np.ndarray, choices: np.ndarray) -> float:
    """Share of held-out choices the model predicts (its more likely option was chosen)."""
    i, j, y = choices[:, 0], choices[:, 1], choices[:, 2]
    return float(((p_model[i, j] > 0.5) == (y == 1)).mean())
