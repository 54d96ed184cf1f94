"""Unlearning: make a model lose a forget set while keeping a retain set, four ways.

``unlearn(lm, forget, retain, UnlearnConfig(method=...))`` returns a new LM and its curve;
the given LM is never changed. Forget and retain are lists of documents, dialogues or
strings, encoded and packed as for finetuning. Methods:

- ``ga``: gradient ascent on the forget set (minimise its negative log-likelihood's negative).
- ``gd``: gradient difference, ascent on forget plus ``retain_weight`` x descent on retain.
- ``npo``: negative preference optimisation (Zhang et al. 2024, arXiv 2404.05868): the
  forget set is pushed below a frozen reference model through a bounded log-sigmoid loss
  with temperature ``beta``, plus ``retain_weight`` x retain loss. Packed rows of forget
  examples play the role of the paper's sequences.
- ``rmu``: representation misdirection (Li et al. 2024, the WMDP paper, arXiv 2403.03218):
  at block ``layer`` the forget activations are steered toward a fixed random direction
  scaled by ``steer``, while retain activations are held to the frozen model's, with weight
  ``retain_weight``; only the MLPs of blocks ``layer - 2`` to ``layer`` train.

Every method runs full finetuning or LoRA adapters (``lora=LoRA(...)``; adapters are merged).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from assay.errors import AssayError
from assay.models import LM
from assay.training.data import IGNORE, Batch, PackedBatches, encode
from assay.training.finetune import LoRA
from assay.training.trainer import Curve, TrainConfig, lm_loss, train

__all__ = ["METHODS", "UnlearnConfig", "unlearn"]

METHODS = ("ga", "gd", "npo", "rmu")


@dataclass(frozen=True)
class UnlearnConfig:
    method: str = "gd"          # ga, gd, npo or rmu
    steps: int = 40             # optimiser steps
    lr: float = 1e-3            # peak learning rate (constant after a short warm-up)
    batch_size: int = 8         # packed rows of forget (and of retain) per step
    seq_len: int = 128
    retain_weight: float = 1.0  # gd, npo, rmu: weight of the retain term
    beta: float = 0.1           # npo: inverse temperature
    layer: int | None = None    # rmu: block whose output is steered (None: the middle one)
    steer: float = 6.0          # rmu: length of the random target direction
    lora: LoRA | None = None    # adapters instead of full finetuning
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AssayError(f"unknown unlearning method {self.method!r}: choose one of "
                             f"{', '.join(METHODS)}")
        if self.steps < 0:
            raise AssayError(f"bad steps {self.steps}: give a number >= 0")


def unlearn(lm: LM, forget: Sequence, retain: Sequence, cfg: UnlearnConfig = UnlearnConfig(),
            on_progress=None) -> tuple[LM, Curve]:
    """A copy of ``lm`` trained to lose ``forget`` and keep ``retain``: (new LM, curve)."""
    if not forget:
        raise AssayError("nothing to unlearn: the forget set is empty")
    if cfg.method != "ga" and not retain:
        raise AssayError(f"method {cfg.method} needs a retain set; pass retain data or use 'ga'")
    model = copy.deepcopy(lm.model)
    if cfg.steps == 0:
        model.eval()
        return LM(model, lm.tokenizer, spec=f"{lm.spec}+unlearn0"), Curve()
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None \
        else lm.tokenizer.eos_token_id
    forget_b = PackedBatches([(encode(lm.tokenizer, forget), 1.0)], cfg.batch_size, cfg.seq_len,
                             pad, seed=cfg.seed)
    retain_b = (PackedBatches([(encode(lm.tokenizer, retain), 1.0)], cfg.batch_size,
                              cfg.seq_len, pad, seed=cfg.seed + 1) if retain else None)
    reference = None
    if cfg.method in ("npo", "rmu"):
        reference = copy.deepcopy(lm.model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    layer = cfg.layer if cfg.layer is not None else lm.n_layers // 2
    if cfg.method == "rmu":
        if not 0 <= layer < lm.n_layers:
            raise AssayError(f"rmu layer {layer} out of range: the model has {lm.n_layers} "
                             f"blocks (0-{lm.n_layers - 1})")
        _train_only_mlps(model, range(max(0, layer - 2), layer + 1))
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(cfg.seed)
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=list(cfg.lora.target_modules) if cfg.lora.target_modules else None))

    device = lm.device
    generator = torch.Generator().manual_seed(cfg.seed)
    direction = torch.rand(lm.d_model, generator=generator)
    direction = (cfg.steer * direction / direction.norm()).to(device)  # (D,)

    def pairs():
        while True:
            f = next(forget_b).to(device)
            r = next(retain_b).to(device) if retain_b is not None else None
            yield (f, r)

    def loss_fn(m, pair) -> torch.Tensor:
        f, r = pair
        if cfg.method == "ga":
            return -lm_loss(m, f)
        if cfg.method == "gd":
            return -lm_loss(m, f) + cfg.retain_weight * lm_loss(m, r)
        if cfg.method == "npo":
            logp = _row_logprob(m, f)
            with torch.no_grad():
                ref = _row_logprob(reference, f)
            forget_loss = -(2 / cfg.beta) * F.logsigmoid(-cfg.beta * (logp - ref)).mean()
            return forget_loss + cfg.retain_weight * lm_loss(m, r)
        h_f = _hidden(m, f, layer)  # (B, T, D)
        mask_f = f.ids != pad
        forget_loss = ((h_f - direction) ** 2).mean(-1)[mask_f].mean()
        h_r = _hidden(m, r, layer)
        with torch.no_grad():
            ref_r = _hidden(reference, r, layer)
        mask_r = r.ids != pad
        retain_loss = ((h_r - ref_r) ** 2).mean(-1)[mask_r].mean()
        return forget_loss + cfg.retain_weight * retain_loss

    warmup = min(5, cfg.steps // 4)
    curve = train(model, pairs(), TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=warmup,
                                              min_lr_ratio=1.0), on_progress=on_progress,
                  loss_fn=loss_fn)
    if cfg.lora is not None:
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return LM(model, lm.tokenizer, spec=f"{lm.spec}+unlearn-{cfg.method}"), curve


def _row_logprob(model, batch: Batch) -> torch.Tensor:
    """Sum of next-token log-probabilities of the labelled tokens in each row: (B,)."""
    logits = model(**batch.model_inputs()).logits[:, :-1]  # (B, T-1, V)
    labels = batch.labels[:, 1:]
    mask = labels != IGNORE
    logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (logp * mask).sum(-1)


def _hidden(model, batch: Batch, layer: int) -> torch.Tensor:
    """The residual stream after block ``layer``: (B, T, D), with gradients."""
    out = model(**batch.model_inputs(), output_hidden_states=True)
    return out.hidden_states[layer + 1]


def _train_only_mlps(model, layers) -> None:
    """Freeze everything but the MLPs of ``layers`` (RMU updates only those)."""
    keep = tuple(f"layers.{i}.mlp." for i in layers)
    found = False
    for name, p in model.named_parameters():
        p.requires_grad_(any(k in name for k in keep))
        found |= p.requires_grad
    if not found:
        raise AssayError("rmu found no MLP weights named 'layers.N.mlp.' to train; this "
                         "architecture needs its own parameter pattern")
