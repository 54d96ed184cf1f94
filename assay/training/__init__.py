"""Training: the trainer, finetuning (full or LoRA), organism recipes, cache and card."""

from assay.training.card import FLOORS_S, evaluate, floor_failures, grade, knowledge_probe
from assay.training.data import Example, PackedBatches, encode, source_items
from assay.training.finetune import LoRA, finetune
from assay.training.organisms import (
    assay_home, card, list_organisms, organism_path, sha256_file,
)
from assay.training.recipes import RECIPES, ModelSpec, Recipe, Stage, get_recipe
from assay.training.tokenizer import train_tokenizer
from assay.training.trainer import Curve, Progress, TrainConfig, flops_per_token, train

__all__ = [
    "FLOORS_S", "RECIPES", "Curve", "Example", "LoRA", "ModelSpec", "PackedBatches", "Progress",
    "Recipe", "Stage", "TrainConfig", "assay_home", "card", "encode", "evaluate", "finetune",
    "floor_failures", "flops_per_token", "get_recipe", "grade", "knowledge_probe",
    "list_organisms", "organism_path", "sha256_file", "source_items", "train", "train_tokenizer",
]
