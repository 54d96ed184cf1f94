"""Finding poisoned training examples from a model's activations, sklearn style.

Each detector is fitted on the per-example activations of a whole (possibly poisoned) data
set, with no labels, and scores every example: higher means more suspicious. `fit` returns
the detector; scoring before `fit` raises an error that says to fit first.

- `SpectralSignature` (Tran, Li and Madry 2018, arXiv 1811.00636): poisons leave a trace
  along the top singular directions of the centred representations; the score is the
  squared projection on them.
- `ActivationClustering` (Chen et al. 2018, arXiv 1811.03728): reduce to a few principal
  components, split into two clusters; the smaller cluster is the suspect one, and the score
  is how much nearer an example lies to its centre than to the larger cluster's.
- `RandomDirection`: the spectral score along a random direction; a negative control.
"""

from __future__ import annotations

import numpy as np

from assay.errors import AssayError

__all__ = ["ActivationClustering", "RandomDirection", "SpectralSignature"]


def _matrix(X, name: str) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise AssayError(f"{name} needs activations shaped (n_examples >= 2, d), got {x.shape}")
    return x


class _Fitted:
    def _check(self) -> None:
        if not hasattr(self, "mean_"):
            raise AssayError(f"{type(self).__name__} is not fitted: call fit(X) first")


class SpectralSignature(_Fitted):
    """``SpectralSignature(n_components=1).fit(X).score(X)`` -> outlier score per row."""

    def __init__(self, n_components: int = 1) -> None:
        self.n_components = n_components

    def fit(self, X) -> SpectralSignature:
        x = _matrix(X, "SpectralSignature.fit")
        self.mean_ = x.mean(0)
        _, _, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        self.components_ = vt[: self.n_components]  # (k, D)
        return self

    def score(self, X) -> np.ndarray:
        self._check()
        z = (_matrix(X, "SpectralSignature.score") - self.mean_) @ self.components_.T
        return (z ** 2).sum(1)


class ActivationClustering(_Fitted):
    """``ActivationClustering(n_components=10).fit(X)``; ``score``, ``predict`` (suspect=True)."""

    def __init__(self, n_components: int = 10, seed: int = 0) -> None:
        self.n_components = n_components
        self.seed = seed

    def fit(self, X) -> ActivationClustering:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        x = _matrix(X, "ActivationClustering.fit")
        k = max(1, min(self.n_components, x.shape[0] - 1, x.shape[1]))
        self.mean_ = x.mean(0)
        self.pca_ = PCA(n_components=k, random_state=self.seed).fit(x)
        z = self.pca_.transform(x)
        km = KMeans(n_clusters=2, n_init=10, random_state=self.seed).fit(z)
        sizes = np.bincount(km.labels_, minlength=2)
        self.suspect_ = int(np.argmin(sizes))
        self.centers_ = km.cluster_centers_
        self.sizes_ = sizes
        return self

    def score(self, X) -> np.ndarray:
        self._check()
        z = self.pca_.transform(_matrix(X, "ActivationClustering.score"))
        d = np.linalg.norm(z[:, None, :] - self.centers_[None], axis=-1)  # (N, 2)
        return d[:, 1 - self.suspect_] - d[:, self.suspect_]

    def predict(self, X) -> np.ndarray:
        return self.score(X) > 0


class RandomDirection(_Fitted):
    """The squared projection on a random unit direction: what chance looks like."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X) -> RandomDirection:
        x = _matrix(X, "RandomDirection.fit")
        self.mean_ = x.mean(0)
        v = np.random.default_rng(self.seed).standard_normal(x.shape[1])
        self.direction_ = v / np.linalg.norm(v)
        return self

    def score(self, X) -> np.ndarray:
        self._check()
        return ((_matrix(X, "RandomDirection.score") - self.mean_) @ self.direction_) ** 2
