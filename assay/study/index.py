"""Study metadata without importing the studies: the commands that only read (``assay
agenda``, ``assay studies``, ``assay show``) answer in about a second, without torch.

``assay/studies/index.json`` holds each built-in study's id, agenda, title, claim, needs and
rule texts, with a hash of the source it was built from. When the source has changed since
(or ``$ASSAY_STUDY_MODULES`` adds studies of your own), the metadata is built from the
registry instead, so it is never stale; ``python -m assay.study.index`` rewrites the file,
and a test fails while the committed index is out of date.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from assay.errors import AssayError

__all__ = ["INDEX", "build", "check_id", "rows", "source_hash", "study_ids", "write"]

PACKAGE = Path(__file__).resolve().parents[1]
INDEX = PACKAGE / "studies" / "index.json"
SOURCES = ("study", "studies")  # folders whose code decides what the metadata says


def source_hash() -> str:
    """SHA-256 over the Python files the metadata is computed from."""
    h = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((PACKAGE / folder).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build() -> list[dict[str, Any]]:
    """The metadata of every registered study, from the registry (imports the studies)."""
    from assay.study.registry import discover, studies

    discover()
    out = []
    for s in studies():
        cfg = s.make_config()
        out.append({"id": s.id, "agenda": list(s.agenda), "title": s.title, "claim": s.claim,
                    "needs": s.needs.as_dict(), "rule": s.rule(cfg).test(),
                    "control_rule": s.control(cfg).test()})
    return out


def rows() -> list[dict[str, Any]]:
    """Study metadata, from the index when it is current and holds every study registered in
    this process, else from the registry."""
    from assay.study.registry import studies

    if not os.environ.get("ASSAY_STUDY_MODULES", "").strip():
        try:
            index = json.loads(INDEX.read_text())
            listed = {r["id"] for r in index["studies"]}
            if index.get("source") == source_hash() and {s.id for s in studies()} <= listed:
                return index["studies"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return build()


def study_ids() -> list[str]:
    return [r["id"] for r in rows()]


def check_id(study_id: str) -> None:
    """An unknown id raises the registry's error, listing the valid ones."""
    ids = study_ids()
    if study_id not in ids:
        raise AssayError(f"unknown study {study_id!r}: valid ids are {', '.join(ids)}")


def write() -> Path:
    """Rewrite ``assay/studies/index.json`` from the built-in studies."""
    if os.environ.get("ASSAY_STUDY_MODULES", "").strip():
        raise AssayError("unset ASSAY_STUDY_MODULES: the index holds the built-in studies only")
    body = {"source": source_hash(), "studies": build()}
    tmp = INDEX.with_name(f".{INDEX.name}.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, INDEX)
    return INDEX


if __name__ == "__main__":
    print(write())
