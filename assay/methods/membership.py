"""Membership inference: was this text in the model's training data?

Every detector turns a text into one score, higher meaning "more likely a member", from
the model's next-token distribution along the text (one forward pass per batch):

- ``loss``: minus the mean token negative log-likelihood (Yeom et al. 2018).
- ``min_k``: Min-K% Prob (Shi et al. 2023, arXiv 2310.16789): the mean log-probability of
  the k% least likely tokens. Members rarely contain a very surprising token.
- ``min_k_plus_plus``: Min-K%++ (Zhang et al. 2024, arXiv 2404.02936): each token's
  log-probability standardised by the mean and spread of log-probabilities under the
  model's own next-token distribution at that position, then the same k% lowest mean.
  A member sits at a local maximum of the likelihood, so its tokens score high relative
  to the alternatives the model considered.
- ``zlib``: log-likelihood divided by the zlib-compressed length (Carlini et al. 2021).

Detectors are scored by AUROC of members against non-members (`assay.methods.stats.auroc`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from assay.errors import AssayError

__all__ = ["DETECTORS", "TokenStats", "membership_scores", "token_stats"]

DETECTORS = ("loss", "min_k", "min_k_plus_plus", "zlib")


@dataclass(frozen=True)
class TokenStats:
    """Per token of one text (the first token, which nothing predicts, excluded)."""

    logprob: np.ndarray  # (T,) log p(x_t | x_<t)
    mean: np.ndarray     # (T,) E_z[log p(z | x_<t)] under the model's distribution
    std: np.ndarray      # (T,) the standard deviation of that log-probability


@torch.no_grad()
def token_stats(lm, texts: Sequence[str], batch_size: int = 32,
                max_tokens: int | None = None) -> list[TokenStats]:
    """`TokenStats` of each text, from one forward pass per batch (texts are truncated to
    ``max_tokens`` tokens, BOS included, when given)."""
    if not texts:
        raise AssayError("token_stats of no texts: pass at least one text")
    seqs = lm.encode(texts)
    if max_tokens is not None:
        seqs = [s[:max_tokens] for s in seqs]
    short = [i for i, s in enumerate(seqs) if len(s) < 2]
    if short:
        raise AssayError(f"text {short[0]} has fewer than 2 tokens; membership scores need at "
                         "least one predicted token")
    out: list[TokenStats | None] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = lm.batch([seqs[i] for i in chunk], "right")
        logp = F.log_softmax(lm.logits(ids=ids, mask=mask)[:, :-1].float(), dim=-1)  # (B, T-1, V)
        probs = logp.exp()
        mean = (probs * logp).sum(-1)  # (B, T-1)
        std = ((probs * logp.square()).sum(-1) - mean.square()).clamp(min=1e-12).sqrt()
        tok = logp.gather(-1, ids[:, 1:, None])[..., 0]
        for b, i in enumerate(chunk):
            n = len(seqs[i]) - 1
            out[i] = TokenStats(tok[b, :n].cpu().numpy(), mean[b, :n].cpu().numpy(),
                                std[b, :n].cpu().numpy())
    return out  # type: ignore[return-value]


def _lowest_mean(values: np.ndarray, k: float) -> float:
    n = max(1, int(np.ceil(k * values.size)))
    return float(np.sort(values)[:n].mean())


def membership_scores(lm, texts: Sequence[str], k: float = 0.2,
                      detectors: Sequence[str] = DETECTORS, batch_size: int = 32,
                      max_tokens: int | None = None) -> dict[str, np.ndarray]:
    """{detector: (N,) scores}, higher meaning more likely a training member.

    ``k`` is the share of lowest-scoring tokens Min-K% and Min-K%++ average (0.2 = 20%).
    """
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise AssayError(f"unknown membership detector {unknown[0]!r}: choose from "
                         f"{', '.join(DETECTORS)}")
    if not 0 < k <= 1:
        raise AssayError(f"k is the share of tokens Min-K% keeps, in (0, 1]; got {k}")
    stats = token_stats(lm, texts, batch_size, max_tokens)
    out: dict[str, np.ndarray] = {}
    for name in detectors:
        if name == "loss":
            values = [s.logprob.mean() for s in stats]
        elif name == "min_k":
            values = [_lowest_mean(s.logprob, k) for s in stats]
        elif name == "min_k_plus_plus":
            values = [_lowest_mean((s.logprob - s.mean) / s.std, k) for s in stats]
        else:  # zlib
            values = [s.logprob.sum() / len(zlib.compress(t.encode())) for s, t in zip(stats, texts)]
        out[name] = np.asarray(values, dtype=float)
    return out
