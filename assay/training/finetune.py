"""Finetune any LM the wrapper loads: every weight, or LoRA adapters through PEFT.

``finetune`` never changes the LM it is given; it returns a new LM (LoRA adapters are
merged back, so the result is a plain model that saves and loads like any other).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from assay.models import LM
from assay.training.data import PackedBatches, encode
from assay.training.trainer import Curve, TrainConfig, train

Items = Sequence  # documents, dialogues or plain strings


@dataclass(frozen=True)
class LoRA:
    r: int = 8  # adapter rank
    alpha: int = 16  # scaling numerator: updates are scaled by alpha / r
    target_modules: tuple[str, ...] | None = None  # None: PEFT's default for the architecture


def finetune(lm: LM, data: Items | Sequence[tuple[Items, float]], cfg: TrainConfig, *,
             lora: LoRA | None = None, batch_size: int = 16, seq_len: int = 128,
             seed: int = 0, on_progress=None) -> tuple[LM, Curve]:
    """Train a copy of ``lm`` on ``data`` and return (new LM, training curve).

    ``data`` is a list of items, or a mixture [(items, weight), ...]. Dialogues are
    trained on the reply only, documents and strings on every token.
    """
    mixture = data if data and isinstance(data[0], tuple) else [(data, 1.0)]
    encoded = [(encode(lm.tokenizer, items), w) for items, w in mixture]
    pad = lm.tokenizer.pad_token_id
    pad = pad if pad is not None else lm.tokenizer.eos_token_id
    batches = PackedBatches(encoded, batch_size, seq_len, pad, seed=seed)

    model = copy.deepcopy(lm.model)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0,
                            target_modules=list(lora.target_modules) if lora.target_modules
                            else None, task_type="CAUSAL_LM")
        torch.manual_seed(seed)  # adapter initialisation
        model = get_peft_model(model, config)
    curve = train(model, batches.on(lm.device), cfg, on_progress=on_progress)
    if lora is not None:
        model = model.merge_and_unload()
    model.eval()
    return LM(model, lm.tokenizer, spec=f"{lm.spec}+finetune"), curve

