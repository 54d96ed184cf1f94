"""Probes on activations, with control tasks (Hewitt and Liang 2019, arXiv 1909.03368).

A `Probe` is a classifier from activation vectors to labels, fitted sklearn-style:
``Probe("linear")`` (multinomial logistic regression) or ``Probe("mlp")`` (one hidden
layer). High probe accuracy alone does not show that a model *uses* an attribute: a
flexible probe can learn the labels itself. A control task keeps the inputs and gives
every entity a random label, the same wherever the entity occurs, with the label
frequencies of the real task (`control_labels`); a probe can only do well on it by
memorising entities. Selectivity = task accuracy - control accuracy (`selectivity`): a
selective probe reads what the representation makes easy, not what it can memorise.

Entities must appear in both the training and the test set (in different contexts) for
the control task to be learnable at all; `split_by_context` makes such a split.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from assay.errors import AssayError

__all__ = ["Probe", "Selectivity", "control_labels", "selectivity", "split_by_context"]


class Probe:
    """A linear or MLP classifier on activations: ``Probe(kind, C=..., hidden=..., seed=...)``.

    ``C`` is the inverse L2 strength of the linear probe; ``hidden`` the MLP's width and
    ``alpha`` its L2 penalty. Inputs are standardised with the training set's statistics.
    """

    def __init__(self, kind: Literal["linear", "mlp"] = "linear", C: float = 1.0,
                 hidden: int = 256, alpha: float = 1e-4, max_iter: int = 500, seed: int = 0):
        if kind not in ("linear", "mlp"):
            raise AssayError(f"unknown probe kind {kind!r}: choose 'linear' or 'mlp'")
        self.kind, self.C, self.hidden, self.alpha = kind, C, hidden, alpha
        self.max_iter, self.seed = max_iter, seed

    def __repr__(self) -> str:
        return f"Probe({self.kind!r})"

    def fit(self, X, y) -> Probe:
        X, y = _matrix(X), np.asarray(y)
        if X.shape[0] != y.shape[0]:
            raise AssayError(f"Probe.fit got {X.shape[0]} activations but {y.shape[0]} labels")
        if len(np.unique(y)) < 2:
            raise AssayError("Probe.fit needs at least two distinct labels")
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier

        self.mean_ = X.mean(0)
        self.scale_ = X.std(0) + 1e-6
        Z = (X - self.mean_) / self.scale_
        if self.kind == "linear":
            model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        else:
            model = MLPClassifier(hidden_layer_sizes=(self.hidden,), alpha=self.alpha,
                                  max_iter=self.max_iter, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = model.fit(Z, y)
        return self

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise AssayError("this Probe is not fitted yet: call probe.fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        self._check()
        return self.model_.predict((_matrix(X) - self.mean_) / self.scale_)

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) class probabilities, columns in the order of ``classes_``."""
        self._check()
        return self.model_.predict_proba((_matrix(X) - self.mean_) / self.scale_)

    @property
    def classes_(self) -> np.ndarray:
        self._check()
        return self.model_.classes_

    @property
    def coef_(self) -> np.ndarray:
        """The linear probe's weights in raw activation space, (K, D) (one row for two
        classes): the logit of class k is ``X @ coef_[k] + intercept_[k]``."""
        self._linear()
        return self.model_.coef_ / self.scale_

    @property
    def intercept_(self) -> np.ndarray:
        """The linear probe's intercepts in raw activation space, (K,)."""
        self._linear()
        return self.model_.intercept_ - self.model_.coef_ @ (self.mean_ / self.scale_)

    def _linear(self) -> None:
        self._check()
        if self.kind != "linear":
            raise AssayError("coef_ and intercept_ exist for Probe('linear') only; an MLP "
                             "probe has no single direction per class")

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


def _matrix(X) -> np.ndarray:
    X = np.asarray(X.numpy() if hasattr(X, "numpy") else X, dtype=np.float64)
    if X.ndim != 2:
        raise AssayError(f"a probe takes a (N, D) matrix of activations, got shape {X.shape}")
    return X


def control_labels(entities: Sequence[Hashable], labels: Sequence, seed: int = 0) -> np.ndarray:
    """One random label per entity, the same wherever it occurs, drawn from the real
    labels' distribution over entities (each entity's real label, shuffled across entities)."""
    ents = list(entities)
    if len(ents) != len(labels):
        raise AssayError(f"control_labels got {len(ents)} entities for {len(labels)} labels")
    first: dict[Hashable, object] = {}
    for e, lab in zip(ents, labels):
        first.setdefault(e, lab)
    keys = list(first)
    shuffled = np.random.default_rng(seed).permutation(np.array([first[k] for k in keys],
                                                                dtype=object))
    mapping = dict(zip(keys, shuffled))
    return np.array([mapping[e] for e in ents])


def split_by_context(contexts: Sequence[Hashable], test: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks: rows whose context (e.g. template) is in ``test`` go
    to the test set, so every entity can appear on both sides in different contexts."""
    held = set(test)
    mask = np.array([c in held for c in contexts])
    if mask.all() or not mask.any():
        raise AssayError("split_by_context left one side empty: hold out some contexts, not all")
    return ~mask, mask


@dataclass(frozen=True)
class Selectivity:
    task: float       # probe accuracy on the real labels (test rows)
    control: float    # probe accuracy on the control task's labels (test rows)

    @property
    def selectivity(self) -> float:
        return self.task - self.control


def selectivity(probe: Probe, X, labels: Sequence, entities: Sequence[Hashable],
                train: np.ndarray, test: np.ndarray, seed: int = 0) -> Selectivity:
    """Fit ``probe`` (a fresh copy per task) on the train rows, for the real labels and for
    the control task, and score both on the test rows."""
    import copy

    X, y = _matrix(X), np.asarray(labels)
    control = control_labels(entities, y, seed)
    real = copy.deepcopy(probe).fit(X[train], y[train]).score(X[test], y[test])
    ctrl = copy.deepcopy(probe).fit(X[train], control[train]).score(X[test], control[test])
    return Selectivity(task=real, control=ctrl)
