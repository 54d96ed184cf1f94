"""The trainer: AdamW, linear warm-up then cosine decay, gradient clipping.

Used for organisms from scratch and for full or LoRA finetuning of any LM the wrapper
loads. Deterministic on CPU for a seed: the seed fixes initialisation (done by the
caller) and every batch (``PackedBatches``); the loop itself draws no randomness.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from assay.training.data import IGNORE, Batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int  # optimiser steps
    lr: float = 3e-3  # peak learning rate
    warmup: int = 50  # steps of linear warm-up
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0  # max global gradient norm
    log_every: int = 10  # steps between curve points


@dataclass
class Progress:
    step: int
    steps: int
    loss: float
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


@dataclass
class Curve:
    """The training curve kept with every trained model."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    tokens: int = 0  # token positions processed (padding included)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def lm_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not IGNORE."""
    logits = model(**batch.model_inputs()).logits  # (B, T, V)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(),
                           ignore_index=IGNORE)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=True)


def train(model: torch.nn.Module, batches: Iterable,
          cfg: TrainConfig, on_progress: Callable[[Progress], None] | None = None,
          loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor] = lm_loss) -> Curve:
    """Train ``model`` in place for ``cfg.steps`` steps; returns the curve.

    ``batches`` yields whatever ``loss_fn(model, item)`` takes: a `Batch` for the default
    next-token loss, or e.g. a (forget, retain) pair of Batches for an unlearning objective.
    """
    model.train()
    opt = make_optimizer(model, cfg)
    params = [p for g in opt.param_groups for p in g["params"]]
    curve = Curve()
    it = iter(batches)
    start = time.perf_counter()
    running = 0.0
    for step in range(cfg.steps):
        batch = next(it)
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip, foreach=True)
        opt.step()
        curve.tokens += sum(b.ids.numel() for b in (batch if isinstance(batch, tuple)
                                                    and not isinstance(batch, Batch) else (batch,)))
        running += loss.item()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            n = (step % cfg.log_every) + 1
            curve.steps.append(step + 1)
            curve.loss.append(running / n)
            curve.lr.append(lr)
            running = 0.0
            curve.seconds = time.perf_counter() - start
            log.debug("step %d/%d loss %.4f", step + 1, cfg.steps, curve.loss[-1])
            if on_progress is not None:
                on_progress(Progress(step + 1, cfg.steps, curve.loss[-1], curve.tokens,
                                     curve.seconds))
    curve.seconds = time.perf_counter() - start
    model.eval()
    return curve


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token of a decoder: 3 x (2 x matmul params + attention).

    Counts every matrix multiply (projections, MLP, LM head) and, as in the PaLM paper's
    model-FLOPs utilisation (Chowdhery et al. 2022, appendix B), attention scores and
    mixing over the full context ``seq_len``; norms, softmax and the optimiser are left
    out. The embedding lookup is free, the untied LM head is not.
    """
    d, n_layer = config.hidden_size, config.num_hidden_layers
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", n_head) or n_head
    d_head = d // n_head
    ffn = config.intermediate_size
    per_layer = d * d * 2 + 2 * d * n_kv * d_head + 3 * d * ffn  # q,o + k,v + gated MLP
    matmul = n_layer * per_layer + d * config.vocab_size  # multiply-adds, + LM head
    attention = n_layer * 2 * seq_len * d  # multiply-adds of QK^T and AV per token
    return 3 * (2 * matmul + 2 * attention)
