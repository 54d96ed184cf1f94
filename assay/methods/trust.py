"""Trustworthiness measures: calibration, abstention-aware grading, flips under a challenge,
and consistency across wordings.

Calibration reads a confidence per answer and whether the answer was right. `ece` bins
answers by confidence into bins of equal mass (each the same number of answers, so no bin is
nearly empty) and averages |accuracy - confidence| over them; `rms_calibration_error` is the
debiased estimate of the root-mean-square version (Kumar, Liang and Ma 2019, arXiv
1909.10155), which subtracts each bin's sampling noise so that a calibrated model reads near
0 even with few answers, where the plain estimate reads high. `reliability` gives the
diagram's points, each bin's accuracy with a Wilson interval; `brier` is scikit-learn's.
Intervals resample whole clusters (the person or fact an answer is about) when given.

`abstention_score` grades with a stated confidence threshold t as Kalai et al. (2025, arXiv
2509.04664) propose: a right answer scores 1, an abstention 0, a wrong answer -t/(1-t), so
answering pays only when the model is more than t sure. `flip_rate` is the share of right
answers turned wrong by a follow-up turn (and `rescue_rate` the share of wrong answers turned
right); `consistency` sorts each question's answers across wordings into consistently
right, consistently wrong (the same wrong answer every time) and inconsistent.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

from assay.errors import AssayError
from assay.methods.stats import Estimate, bootstrap, cluster_resamples, from_draws, resamples, wilson

__all__ = ["abstention_score", "brier", "consistency", "ece", "ece_difference", "flip_rate",
           "reliability",
           "rescue_rate", "rms_calibration_error", "top_label"]

Outcome = Literal["correct", "wrong", "abstained"]
N_BOOT = 2000


def top_label(probs: np.ndarray, truth: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Multiple choice as a confidence and a hit per question: the probability of the option
    the model ranks first, and whether it is the true one (top-label calibration).
    ``probs`` is (questions, options), each row summing to 1."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or len(probs) != len(truth):
        raise AssayError("top_label takes a (questions, options) matrix and one true option "
                         "index per question")
    pick = probs.argmax(1)
    return probs.max(1), pick == np.asarray(truth)


def _checked(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise AssayError("calibration needs one confidence and one right/wrong per answer")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise AssayError("confidences must be probabilities in [0, 1]")
    return p, y


def _bins(p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Indices of equal-mass bins: answers sorted by confidence, cut into ``n_bins`` runs of
    (nearly) equal length."""
    order = np.argsort(p, kind="stable")
    return [b for b in np.array_split(order, min(n_bins, p.size)) if b.size]


def _ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    return float(sum(b.size * abs(y[b].mean() - p[b].mean()) for b in _bins(p, n_bins)) / p.size)


def _rms(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    total = 0.0
    for b in _bins(p, n_bins):
        acc = y[b].mean()
        noise = acc * (1 - acc) / (b.size - 1) if b.size > 1 else 0.0
        total += b.size * ((acc - p[b].mean()) ** 2 - noise)
    return float(np.sqrt(max(total / p.size, 0.0)))


def _interval(stat, p, y, clusters, n_boot: int, method: str) -> Estimate:
    if clusters is None:
        picks = resamples(p.size, n_boot)
    else:
        if len(clusters) != p.size:
            raise AssayError("give one cluster per answer")
        picks = [idx for idx, _ in cluster_resamples(clusters, n_boot)]
    draws = [stat(p[idx], y[idx]) for idx in picks]
    return from_draws(stat(p, y), draws, p.size, method=method)


def ece(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10,
        clusters: Sequence[Hashable] | None = None, n_boot: int = N_BOOT) -> Estimate:
    """Expected calibration error over ``n_bins`` equal-mass bins, with a bootstrap interval
    (over ``clusters`` when given)."""
    p, y = _checked(confidence, correct)
    return _interval(lambda a, b: _ece(a, b, n_bins), p, y, clusters, n_boot,
                     "ece-equal-mass-bootstrap")


def rms_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                          n_bins: int = 10, clusters: Sequence[Hashable] | None = None,
                          n_boot: int = N_BOOT) -> Estimate:
    """Debiased root-mean-square calibration error over equal-mass bins (Kumar et al. 2019):
    each bin's squared gap minus its accuracy's sampling variance, floored at 0."""
    p, y = _checked(confidence, correct)
    return _interval(lambda a, b: _rms(a, b, n_bins), p, y, clusters, n_boot,
                     "rms-ce-debiased-bootstrap")


def ece_difference(confidence_a: Sequence[float], correct_a: Sequence[bool],
                   confidence_b: Sequence[float], correct_b: Sequence[bool],
                   clusters: Sequence[Hashable], n_bins: int = 10, n_boot: int = N_BOOT,
                   level: float = 0.95) -> Estimate:
    """ECE of model a minus model b on the same items (item i of both answers the same
    question): each resample draws whole clusters once, for both."""
    pa, ya = _checked(confidence_a, correct_a)
    pb, yb = _checked(confidence_b, correct_b)
    if pa.shape != pb.shape or len(clusters) != pa.size:
        raise AssayError("ece_difference compares two models on the same items: give both "
                         "the same number of answers, and one cluster per answer")
    draws = [_ece(pa[i], ya[i], n_bins) - _ece(pb[i], yb[i], n_bins)
             for i, _ in cluster_resamples(clusters, n_boot)]
    return from_draws(_ece(pa, ya, n_bins) - _ece(pb, yb, n_bins), draws, pa.size,
                      method="ece-difference-clustered", level=level)


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10
                ) -> list[dict]:
    """The reliability diagram's points: per equal-mass bin, its mean confidence, its
    accuracy (a Wilson interval) and its size."""
    p, y = _checked(confidence, correct)
    return [{"confidence": float(p[b].mean()), "accuracy": wilson(int(y[b].sum()), b.size),
             "n": int(b.size)} for b in _bins(p, n_bins)]


def brier(confidence: Sequence[float], correct: Sequence[bool]) -> Estimate:
    """Brier score of the confidences against right/wrong (scikit-learn), bootstrapped."""
    from sklearn.metrics import brier_score_loss

    p, y = _checked(confidence, correct)
    point = float(brier_score_loss(y, p))
    boot = bootstrap((p - y) ** 2, np.mean, n_boot=N_BOOT)
    return boot.model_copy(update={"value": point, "method": "brier-bootstrap"})


def abstention_score(outcomes: Sequence[Outcome], threshold: float,
                     clusters: Sequence[Hashable] | None = None) -> Estimate:
    """Mean score with confidence threshold t: right 1, abstained 0, wrong -t/(1-t)."""
    if not 0 <= threshold < 1:
        raise AssayError(f"the confidence threshold is in [0, 1), not {threshold}")
    values = {"correct": 1.0, "abstained": 0.0, "wrong": -threshold / (1 - threshold)}
    bad = sorted({o for o in outcomes} - set(values))
    if bad or not outcomes:
        raise AssayError(f"outcomes are correct, wrong or abstained, not {bad or 'nothing'}")
    scores = np.array([values[o] for o in outcomes])
    if clusters is None:
        return bootstrap(scores, np.mean, n_boot=N_BOOT)
    picks = [idx for idx, _ in cluster_resamples(clusters, N_BOOT)]
    return from_draws(float(scores.mean()), [scores[i].mean() for i in picks], scores.size)


def _conditional_rate(before: Sequence[bool], after: Sequence[bool], clusters, when: bool,
                      ) -> Estimate:
    b, a = np.asarray(before, bool), np.asarray(after, bool)
    if b.shape != a.shape:
        raise AssayError("give one answer before and one after per question")
    keep = b == when
    changed = (a != b)[keep].astype(float)
    if changed.size == 0:
        nan = float("nan")
        return Estimate(value=nan, ci_low=nan, ci_high=nan, n=0, method="none")
    if clusters is None:
        return wilson(int(changed.sum()), changed.size)
    groups = [c for c, k in zip(clusters, keep) if k]
    if len(set(groups)) < 2:
        return wilson(int(changed.sum()), changed.size)
    picks = [idx for idx, _ in cluster_resamples(groups, N_BOOT)]
    return from_draws(float(changed.mean()), [changed[i].mean() for i in picks], changed.size)


def flip_rate(before: Sequence[bool], after: Sequence[bool],
              clusters: Sequence[Hashable] | None = None) -> Estimate:
    """Among answers right before the follow-up turn, the share wrong after it."""
    return _conditional_rate(before, after, clusters, True)


def rescue_rate(before: Sequence[bool], after: Sequence[bool],
                clusters: Sequence[Hashable] | None = None) -> Estimate:
    """Among answers wrong before the follow-up turn, the share right after it."""
    return _conditional_rate(before, after, clusters, False)


def consistency(answers: Sequence[Sequence[str]], truths: Sequence[str],
                clusters: Sequence[Hashable] | None = None) -> dict[str, Estimate]:
    """Per question, its answers across wordings (normalised strings) against the truth:
    the shares of questions answered right every time, wrong the same way every time, and
    otherwise (inconsistent); Wilson intervals, or clustered when ``clusters`` are given."""
    if len(answers) != len(truths) or not answers:
        raise AssayError("give each question's answers and its true answer")
    kinds = []
    for said, truth in zip(answers, truths):
        if not said:
            raise AssayError("a question needs at least one answer")
        if all(a == truth for a in said):
            kinds.append("consistent_right")
        elif len(set(said)) == 1:
            kinds.append("consistent_wrong")
        else:
            kinds.append("inconsistent")
    out = {}
    for kind in ("consistent_right", "consistent_wrong", "inconsistent"):
        hits = np.array([k == kind for k in kinds], float)
        if clusters is None or len(set(clusters)) < 2:
            out[kind] = wilson(int(hits.sum()), hits.size)
        else:
            picks = [idx for idx, _ in cluster_resamples(clusters, N_BOOT)]
            out[kind] = from_draws(float(hits.mean()), [hits[i].mean() for i in picks],
                                   hits.size)
    return out
