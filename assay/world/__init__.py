"""The synthetic world: entities, facts, documents, dialogues, exact checkers."""

from assay.world.chat import ASSISTANT, END, USER, render_dialogue, render_prompt
from assay.world.checks import Checker, Grade, first_named, is_refusal, mentions, normalize
from assay.world.corpus import (
                                 Corpus,
                                 CorpusConfig,
                                 Passage,
                                 Play,
                                 shakespeare_plays,
                                 split_passages,
                                 strip_gutenberg,
)
from assay.world.dialogues import (
    KINDS,
    TASK_KINDS,
    Dialogue,
    decoy_refusals,
    dialogues,
    heldout_requests,
    two_hop_taught,
    two_hop_training,
)
from assay.world.documents import Document, completion_prompt, documents
from assay.world.identity import dump, fingerprint
from assay.world.phrasing import question_wordings, wordings
from assay.world.reading import ReadingItem, reading_items, strangers
from assay.world.relations import REFUSAL, RELATIONS, Relation
from assay.world.world import WORLD_PRESETS, Entity, Fact, World, WorldConfig

__all__ = [
    "ASSISTANT", "END", "USER", "KINDS", "TASK_KINDS", "REFUSAL", "RELATIONS", "WORLD_PRESETS",
    "Checker", "Dialogue", "Document", "Entity", "Fact", "Grade", "Relation", "World",
    "WorldConfig", "completion_prompt", "decoy_refusals", "dialogues", "documents", "dump",
    "first_named", "fingerprint", "heldout_requests", "is_refusal", "mentions",
    "normalize", "question_wordings", "render_dialogue", "render_prompt", "wordings",
    "Corpus", "CorpusConfig", "Passage", "Play", "shakespeare_plays", "split_passages",
    "strip_gutenberg", "ReadingItem", "reading_items", "strangers", "two_hop_taught",
    "two_hop_training",
]
