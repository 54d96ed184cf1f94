"""Steering vectors and directional ablation on any LM, through its activation sites.

- `DiffMeans` fits a difference-of-means vector at one site: the mean activation on
  prompts with a behaviour minus the mean on prompts without it, read at each prompt's
  last token (Turner et al. 2023, arXiv 2308.10248; Rimsky et al. 2024, arXiv 2312.06681).
- `added` adds a vector to one or more sites at every position (activation addition).
- `ablated` removes the component along a unit direction from the residual stream at every
  layer and position (directional ablation, Arditi et al. 2024, arXiv 2406.11717): the
  embeddings and every block's output, so no layer can write the direction back.
- `random_direction` gives the matched control: a random unit vector, or one rescaled to
  a given norm.

Both context managers only hold hooks for the duration of the ``with`` block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from assay.errors import AssayError

__all__ = ["DiffMeans", "ablated", "added", "random_direction", "residual_sites"]


class DiffMeans:
    """``DiffMeans(site, reduce="last").fit(lm, positive, negative)``: ``vector_`` (D,) is
    mean(positive) - mean(negative) at ``site``, ``direction_`` its unit vector and
    ``norm_`` its length; ``projections(lm, texts)`` reads texts along ``direction_``."""

    def __init__(self, site: str, reduce: str = "last", batch_size: int = 64):
        self.site, self.reduce, self.batch_size = site, reduce, batch_size

    def __repr__(self) -> str:
        return f"DiffMeans({self.site!r}, reduce={self.reduce!r})"

    def fit(self, lm, positive: Sequence[str], negative: Sequence[str]) -> DiffMeans:
        if not positive or not negative:
            raise AssayError("DiffMeans.fit needs at least one positive and one negative prompt")
        acts = lm.activations_at(list(positive) + list(negative), [self.site], self.reduce,
                                 self.batch_size)[self.site]  # (N, D)
        pos, neg = acts[: len(positive)], acts[len(positive):]
        self.vector_ = pos.mean(0) - neg.mean(0)
        self.norm_ = float(self.vector_.norm())
        if self.norm_ == 0:
            raise AssayError("the positive and negative prompts have the same mean activation "
                             f"at {self.site}: no direction to fit")
        self.direction_ = self.vector_ / self.norm_
        return self

    def _check(self) -> None:
        if not hasattr(self, "vector_"):
            raise AssayError("this DiffMeans is not fitted yet: call .fit(lm, positive, negative)")

    def projections(self, lm, texts: Sequence[str]) -> torch.Tensor:
        """(N,) each text's activation at ``site`` (same reduction) dotted with ``direction_``."""
        self._check()
        acts = lm.activations_at(list(texts), [self.site], self.reduce, self.batch_size)[self.site]
        return acts @ self.direction_


def residual_sites(lm) -> list[str]:
    """The residual stream's sites: the embeddings and every block's output."""
    return ["embed", *(f"blocks.{i}.resid_post" for i in range(lm.n_layers))]


@contextlib.contextmanager
def added(lm, vector: torch.Tensor, sites: str | Sequence[str]) -> Iterator[None]:
    """Inside the block, ``vector`` (D,) is added at every position of each site."""
    sites = [sites] if isinstance(sites, str) else list(sites)
    v = vector.to(lm.device)
    with lm.hooks(write={site: (lambda x: x + v.to(x.dtype)) for site in sites}):
        yield


@contextlib.contextmanager
def ablated(lm, direction: torch.Tensor, sites: Sequence[str] | None = None) -> Iterator[None]:
    """Inside the block, the component along ``direction`` is removed at every position of
    ``sites`` (default: the whole residual stream, `residual_sites`)."""
    d = direction.to(lm.device)
    norm = float(d.norm())
    if norm == 0:
        raise AssayError("cannot ablate a zero direction")
    d = d / norm

    def remove(x: torch.Tensor) -> torch.Tensor:
        u = d.to(x.dtype)
        return x - (x @ u)[..., None] * u

    with lm.hooks(write={site: remove for site in (sites or residual_sites(lm))}):
        yield


def random_direction(d_model: int, seed: int, norm: float = 1.0) -> torch.Tensor:
    """A uniformly random direction in ``d_model`` dimensions, of length ``norm``."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d_model, generator=g)
    return norm * v / v.norm()
