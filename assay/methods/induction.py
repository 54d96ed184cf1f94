"""Induction heads: per-head attention and circuit scores, and the in-context learning score.

An induction head (Olsson et al. 2022, arXiv 2209.11895) completes a pattern ``A B ... A``
with ``B``: at the second ``A`` it attends to the token after the first ``A`` and copies
it. It needs two heads in sequence (one that writes "my previous token was A" into each
position, one that searches for it), so a one-layer attention-only model cannot form one.
The paper's measures, for any Llama-style Hugging Face causal LM:

- prefix matching (`head_attention`): on a random token sequence written twice, the
  attention each token of the second copy pays to the token after its first occurrence.
- `copying_scores`: whether a head's OV circuit, read from the embedding to the
  unembedding, raises the logit of the token it attends to: the eigenvalues of
  ``W_U W_O W_V W_E`` (norm gains folded in), as (sum of eigenvalues) / (sum of their
  moduli), +1 for a pure copier and -1 for a pure anti-copier.
- `icl_score`: the loss late in a context minus the loss early in it; it falls below zero
  when a model uses the context.

`repeated_tokens` makes the test sequences; `attention_only` turns a Llama model into the
attention-only models the paper studies; `CharTokenizer` reads text one character at a
time, so a small model's vocabulary is small.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from assay.errors import AssayError

__all__ = ["CharTokenizer", "attention_only", "copying_scores", "head_attention", "icl_score",
           "repeated_tokens", "repeat_spans", "token_losses"]


class CharTokenizer:
    """One id per character, from the characters of ``texts`` in sorted order."""

    def __init__(self, texts: Iterable[str]):
        self.chars = sorted(set().union(*(set(t) for t in texts)))
        if not self.chars:
            raise AssayError("a character tokenizer needs some text to read its characters from")
        self._ids = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = set(text) - self._ids.keys()
        if unknown:
            raise AssayError(f"characters {''.join(sorted(unknown))!r} are not in this tokenizer's "
                             "alphabet: build it from texts that contain them")
        return np.array([self._ids[c] for c in text], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class _NoMLP(nn.Module):
    """Stands in for a block's MLP: adds nothing to the residual stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def attention_only(model: nn.Module) -> nn.Module:
    """``model`` (a Llama-style causal LM) with every block's MLP removed, in place."""
    layers = _layers(model)
    for layer in layers:
        layer.mlp = _NoMLP()
    return model


def repeated_tokens(n: int, length: int, probs: np.ndarray, seed: int) -> torch.Tensor:
    """(n, 2 * length) ids: ``length`` tokens drawn independently from ``probs`` (say, the
    corpus' token frequencies), then the same tokens again."""
    probs = np.asarray(probs, dtype=float)
    if length < 2 or probs.ndim != 1 or probs.min() < 0 or not np.isclose(probs.sum(), 1):
        raise AssayError("repeated_tokens needs length >= 2 and a probability vector over the "
                         "vocabulary")
    first = np.random.default_rng(seed).choice(len(probs), (n, length), p=probs)
    return torch.tensor(np.concatenate([first, first], 1))


def repeat_spans(rows: np.ndarray, span: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``rows`` (n, T) whose last ``k`` tokens, per row, repeat ``k`` tokens from
    a random earlier place in the row, ``k`` drawn from ``span // 2`` to ``span``.

    Where the first copy starts varies, so the offset between the copies does too: only
    looking back at the earlier copy, not at a fixed distance, predicts the second."""
    rows = np.array(rows, copy=True)
    T = rows.shape[1]
    if not 2 <= span <= T // 2:
        raise AssayError(f"span {span} must be between 2 and half the window ({T // 2})")
    for r in rows:
        k = rng.integers(span // 2, span + 1)
        a = rng.integers(0, T - 2 * k + 1)
        r[T - k:] = r[a:a + k]
    return rows


@torch.no_grad()
def head_attention(model: nn.Module, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(prefix, previous)``, each (n, layers, heads): on sequences ``ids`` (n, 2 * length)
    written twice (`repeated_tokens`), each head's mean attention from the second copy's
    tokens to the token after their first occurrence (prefix matching), and from every
    token after the first to the token just before it (a previous-token head's pattern).
    Needs attention weights, so eager attention."""
    n, T = ids.shape
    half = T // 2
    if T % 2 or half < 2 or not torch.equal(ids[:, :half], ids[:, half:]):
        raise AssayError("prefix matching needs sequences written twice (repeated_tokens)")
    out = model(input_ids=ids.to(_device(model)), output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise AssayError("this model returns no attention weights: load it with "
                         "attn_implementation='eager'")
    q = torch.arange(half, T - 1)  # the last token's successor is past the end
    t = torch.arange(1, T)
    prefix = torch.stack([a[:, :, q, q - half + 1].mean(-1) for a in out.attentions], 1)
    previous = torch.stack([a[:, :, t, t - 1].mean(-1) for a in out.attentions], 1)
    return prefix.float().cpu().numpy(), previous.float().cpu().numpy()


@torch.no_grad()
def copying_scores(model: nn.Module) -> np.ndarray:
    """(layers, heads): each head's OV-circuit copying score in [-1, 1] (module docstring).

    The circuit is ``W_U G_f W_O^h W_V^h G_l W_E^T`` with ``G_f``, ``G_l`` the final and the
    block's input RMS-norm gains; its nonzero eigenvalues are those of the small
    (head dim x head dim) matrix ``W_V^h G_l W_E^T W_U G_f W_O^h``, so a large vocabulary
    costs little. Later blocks read the embeddings directly here, as in the paper."""
    layers = _layers(model)
    cfg = model.config
    H = cfg.num_attention_heads
    groups = H // getattr(cfg, "num_key_value_heads", H)
    W_E = model.get_input_embeddings().weight.float()             # (V, D)
    W_U = model.get_output_embeddings().weight.float()            # (V, D)
    g_final = model.model.norm.weight.float()
    out = np.zeros((len(layers), H))
    for i, layer in enumerate(layers):
        attn = layer.self_attn
        W_V, W_O = attn.v_proj.weight.float(), attn.o_proj.weight.float()  # (KV*dh, D), (D, H*dh)
        dh = W_O.shape[1] // H
        read = (W_E * layer.input_layernorm.weight.float()) @ W_V.T     # (V, KV*dh)
        write = W_U * g_final                                           # (V, D)
        for h in range(H):
            kv = h // groups
            small = read[:, kv * dh:(kv + 1) * dh].T @ write @ W_O[:, h * dh:(h + 1) * dh]
            eig = torch.linalg.eigvals(small.double())
            out[i, h] = float(eig.real.sum() / eig.abs().sum().clamp_min(1e-12))
    return out


@torch.no_grad()
def token_losses(model: nn.Module, ids: torch.Tensor) -> np.ndarray:
    """(n, T - 1) next-token cross-entropy at each position of ``ids`` (n, T), in nats."""
    logits = model(input_ids=ids.to(_device(model))).logits[:, :-1].float()
    target = ids[:, 1:].to(logits.device)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(),
                           reduction="none").view(target.shape).cpu().numpy()


def icl_score(losses: np.ndarray, early: tuple[int, int], late: tuple[int, int]) -> np.ndarray:
    """(n,) mean loss over the ``late`` positions minus over the ``early`` ones ([start,
    end) into ``losses`` (n, T - 1), `token_losses`); negative when context helps."""
    T = losses.shape[1]
    if not (0 <= early[0] < early[1] <= late[0] < late[1] <= T):
        raise AssayError(f"ICL positions early={early}, late={late} must be ordered, "
                         f"non-empty windows within the {T} scored positions")
    return losses[:, late[0]:late[1]].mean(1) - losses[:, early[0]:early[1]].mean(1)


def _layers(model: nn.Module):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise AssayError(f"{type(model).__name__} has no model.layers: induction-head scores "
                         "read Llama-style blocks")
    return layers


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
