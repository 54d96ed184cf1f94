"""Models trained from scratch inside a study, on a corpus the study controls exactly."""

from __future__ import annotations

from dataclasses import replace

from assay.models import LM
from assay.training.finetune import finetune
from assay.training.organisms import fresh_model
from assay.training.recipes import LADDER_SIZES, RECIPES, Architecture
from assay.training.trainer import TrainConfig

BATCH, SEQ_LEN = 16, 128


def train_from_scratch(base: LM, d: int, corpus: list[str], *, steps: int, lr: float, seed: int,
                       name: str, warmup: int = 30) -> LM:
    """A ladder-width model (``d`` = d_model) initialised afresh with ``seed`` and trained on
    ``corpus`` with the recipe's trainer, in batches of 16 x 128 tokens; it shares ``base``'s
    tokenizer. ``seed`` fixes the initialisation and the batch order."""
    n_layer, n_head, d_ff = LADDER_SIZES[d]
    recipe = replace(RECIPES["s"], model=Architecture(d_model=d, n_layer=n_layer, n_head=n_head,
                                                      d_ff=d_ff), seed=seed)
    fresh = LM(fresh_model(recipe, base.tokenizer), base.tokenizer, spec=f"{name}-d{d}")
    lm, _ = finetune(fresh, corpus, TrainConfig(steps=steps, lr=lr, warmup=warmup),
                     batch_size=BATCH, seq_len=SEQ_LEN, seed=seed)
    return lm


def training_flops(lm: LM, steps: int) -> float:
    """6 N D: parameters times tokens seen, times six (forward and backward)."""
    return 6 * lm.n_params * steps * BATCH * SEQ_LEN
