"""Training: the trainer, finetuning (full or LoRA), organism recipes (world or corpus), cache
and card."""

from assay.training.card import (
                                 FLOORS_S,
                                 evaluate,
                                 evaluate_corpus,
                                 floor_failures,
                                 grade,
                                 knowledge_probe,
                                 passage_nll,
)
from assay.training.data import Example, PackedBatches, encode, source_examples, source_items
from assay.training.finetune import LoRA, finetune
from assay.training.organisms import (
                                 assay_home,
                                 card,
                                 list_organisms,
                                 organism_corpus,
                                 organism_path,
                                 organism_world,
                                 sha256_file,
)
from assay.training.recipes import RECIPES, Architecture, Recipe, Stage, get_recipe
from assay.training.tokenizer import train_tokenizer
from assay.training.trainer import Curve, Progress, TrainConfig, flops_per_token, train

__all__ = [
    "FLOORS_S", "RECIPES", "Curve", "Example", "LoRA", "Architecture", "PackedBatches", "Progress",
    "Recipe", "Stage", "TrainConfig", "assay_home", "card", "encode", "evaluate", "finetune",
    "floor_failures", "flops_per_token", "get_recipe", "grade", "knowledge_probe",
    "list_organisms", "organism_path", "sha256_file", "source_items", "train", "train_tokenizer",
    "evaluate_corpus", "organism_corpus", "organism_world", "passage_nll", "source_examples",
]
