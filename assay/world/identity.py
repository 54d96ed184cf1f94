"""A world's identity: everything it generates as canonical JSON, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from assay.world.dialogues import dialogues
from assay.world.documents import documents
from assay.world.world import World

__all__ = ["dump", "fingerprint"]


def dump(world: World) -> str:
    """Every entity, fact, document and dialogue of ``world`` as canonical JSON."""
    payload = {
        "config": asdict(world.config),
        "entities": [asdict(e) for e in world.entities.values()],
        "split": world._split,
        "documents": [asdict(d) for d in documents(world)],
        "dialogues": [asdict(d) for d in dialogues(world)],
    }
    return json.dumps(payload, sort_keys=True, ensure_ascii=False)


def fingerprint(world: World) -> str:
    """sha256 of `dump`: equal fingerprints mean identical worlds."""
    return hashlib.sha256(dump(world).encode()).hexdigest()
