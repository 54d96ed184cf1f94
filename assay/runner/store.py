"""The result store: one SQLite file (WAL) of unit records plus a folder of artifacts per unit.

Layout of a store folder::

    store.db              unit records (key, study, config, status, result JSON, error, ...)
    units/<key>/          a finished unit's artifacts and result.json
    units/.tmp-<key>-*/   a unit being computed; renamed to units/<key>/ when it finishes

Crash safety comes from the order of writes: artifacts and result.json go to a temporary
folder, which is renamed into place, and only then does one transaction mark the record
done. A process killed at any moment leaves either a done record with its folder, or a record
still marked running by a dead owner, which the next run reclaims (recovering the result from
the folder when the rename had already happened). Claims take SQLite's write lock
(``BEGIN IMMEDIATE``), so two processes never run the same unit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from assay.errors import AssayError
from assay.runner.plan import Unit
from assay.study import Result

__all__ = ["Claim", "Record", "Store", "default_store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    key       TEXT PRIMARY KEY,
    study     TEXT NOT NULL,
    profile   TEXT NOT NULL,
    model     TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    config    TEXT NOT NULL,                -- JSON
    status    TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    owner     TEXT,                         -- host:pid of the process running it
    heartbeat REAL,                         -- last sign of life from the owner (unix time)
    attempts  INTEGER NOT NULL DEFAULT 0,   -- times a process started computing it
    result    TEXT,                         -- Result JSON once done
    error     TEXT,                         -- the last failure, kept until it succeeds
    created   REAL NOT NULL,
    started   REAL,
    finished  REAL,
    wall      REAL                          -- seconds the finishing attempt took
);
CREATE INDEX IF NOT EXISTS units_study ON units (study, status);
"""
log = logging.getLogger(__name__)
RESULT_FILE = "result.json"
STALE_SECONDS = 300.0  # a claim from another host with no heartbeat for this long is abandoned

Claim = Literal["claimed", "done", "busy"]


def default_store() -> Path:
    """``$ASSAY_STORE`` if set, else ``./assay-results``."""
    return Path(os.environ.get("ASSAY_STORE", "assay-results")).expanduser()


@dataclass(frozen=True)
class Record:
    key: str
    study: str
    profile: str
    model: str
    seed: int
    config: dict[str, Any]
    status: str
    attempts: int
    result: Result | None
    error: str | None
    finished: float | None
    wall_seconds: float | None
    folder: Path

    @property
    def intact(self) -> bool:
        """False when a done unit's folder has gone missing (the next run recomputes it)."""
        return self.status != "done" or (self.folder / RESULT_FILE).is_file()

    @property
    def artifacts(self) -> list[str]:
        """Files in the unit's folder (result.json excluded), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_file() and p.name != RESULT_FILE)

    def to_json(self) -> dict[str, Any]:
        """The shape ``assay run --json`` and ``assay show --json`` print."""
        r = self.result
        return {
            "key": self.key, "study": self.study, "model": self.model, "seed": self.seed,
            "profile": self.profile, "config": self.config, "status": self.status,
            "outcome": r.status if r else None,  # the verdict, or "confounded"
            "verdict": r.verdict.status if r else None,
            "statement": r.verdict.statement if r else None,
            "test": r.verdict.test if r else None,
            "metrics": _metrics(r.metrics) if r else {},
            "control": ({"verdict": r.control.verdict.status,
                         "statement": r.control.verdict.statement,
                         "condition": r.control.condition,
                         "metrics": _metrics(r.control.metrics)} if r else None),
            "artifacts": [str(self.folder / a) for a in self.artifacts],
            "wall_seconds": self.wall_seconds,
            "error": self.error if self.status == "failed" else None,
        }


def _metrics(metrics) -> dict[str, dict[str, Any]]:
    return {k: {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}
            for k, e in metrics.items()}


class Store:
    """``Store(root)``: opens (creating if needed) the store in folder ``root``."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.path = self.root / "store.db"
        if not self.path.exists() and not create:
            raise AssayError(f"no result store at {self.root}: run `assay run` first, "
                             "or point --store at the folder it wrote")
        if self.root.exists() and not self.root.is_dir():
            raise AssayError(f"store path {self.root} is a file: give a folder with --store")
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            (self.root / "units").mkdir(exist_ok=True)  # only beside a store that opened
        except sqlite3.DatabaseError as err:
            if "readonly" in str(err) or "unable to open" in str(err):
                raise AssayError(f"cannot write the result store {self.root} ({err}): give a "
                                 "writable folder with --store") from None
            raise AssayError(f"{self.path} is not a readable assay store ({err}); move it "
                             "aside and rerun, or point --store at another folder") from None
        except OSError as err:
            raise AssayError(f"cannot use {self.root} as the result store "
                             f"({err.strerror or err}): give a writable folder with --store") \
                from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store('{self.root}')"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its start."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------ folders

    def unit_dir(self, key: str) -> Path:
        return self.root / "units" / key

    def scratch_dir(self, key: str) -> Path:
        """A fresh, empty temporary folder for computing unit ``key`` in this process."""
        folder = self.root / "units" / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def _clear_scratch(self, key: str) -> None:
        for folder in (self.root / "units").glob(f".tmp-{key}-*"):
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------ claims

    def claim(self, unit: Unit) -> Claim:
        """Take ``unit`` for this process: ``claimed``, or ``done`` / ``busy`` (leave it)."""
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT status, owner, heartbeat FROM units WHERE key = ?",
                             (unit.key,)).fetchone()
            if row is None:
                db.execute("INSERT INTO units (key, study, profile, model, seed, config, status,"
                           " created) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                           (unit.key, unit.study, unit.profile, str(unit.model), unit.seed,
                            json.dumps(unit.config, sort_keys=True), now))
                status = "queued"
            else:
                status, owner, heartbeat = row
                if status == "done" and (self.unit_dir(unit.key) / RESULT_FILE).is_file():
                    return "done"
                if status == "done":  # its folder was deleted by hand: compute it again
                    log.warning("unit %s (%s) is marked done but its folder is gone; "
                                "recomputing it", unit.key, unit.study)
                if status == "running" and owner != self.owner and _alive(owner, heartbeat, now):
                    return "busy"
                if status == "running" and self._recover(db, unit.key, now):
                    return "done"
            self._clear_scratch(unit.key)
            shutil.rmtree(self.unit_dir(unit.key), ignore_errors=True)
            db.execute("UPDATE units SET status = 'running', owner = ?, heartbeat = ?, "
                       "started = ?, attempts = attempts + 1 WHERE key = ?",
                       (self.owner, now, now, unit.key))
        return "claimed"

    def _recover(self, db: sqlite3.Connection, key: str, now: float) -> bool:
        """Mark ``key`` done from its folder if a dead owner renamed it into place."""
        path = self.unit_dir(key) / RESULT_FILE
        if not path.is_file():
            return False
        try:
            result = Result.model_validate_json(path.read_text())
        except (ValidationError, OSError, ValueError):
            return False
        wall = result.provenance.wall_seconds if result.provenance else None
        db.execute("UPDATE units SET status = 'done', result = ?, error = NULL, finished = ?, "
                   "wall = ?, owner = NULL WHERE key = ?",
                   (result.model_dump_json(), now, wall, key))
        return True

    def heartbeat(self, key: str) -> None:
        """Tell other processes this claim is alive (cheap; call it now and then)."""
        self._db.execute("UPDATE units SET heartbeat = ? WHERE key = ? AND owner = ?",
                         (time.time(), key, self.owner))

    def finish(self, key: str, scratch: Path, result: Result) -> None:
        """Publish the unit: result.json into ``scratch``, rename it into place, mark done."""
        text = result.model_dump_json()
        tmp = scratch / (RESULT_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, scratch / RESULT_FILE)
        final = self.unit_dir(key)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(scratch, final)
        _fsync_dir(final.parent)
        wall = result.provenance.wall_seconds if result.provenance else None
        with self._write() as db:
            db.execute("UPDATE units SET status = 'done', result = ?, error = NULL, "
                       "finished = ?, wall = ?, owner = NULL WHERE key = ? AND owner = ?",
                       (text, time.time(), wall, key, self.owner))

    def fail(self, key: str, error: str) -> None:
        """Record that the unit raised; the next run retries it."""
        self._clear_scratch(key)
        with self._write() as db:
            db.execute("UPDATE units SET status = 'failed', error = ?, owner = NULL, "
                       "finished = ? WHERE key = ? AND owner = ?",
                       (error, time.time(), key, self.owner))

    def release(self, key: str) -> None:
        """Give an unfinished claim back (on interrupt): the unit is queued again."""
        self._clear_scratch(key)
        with self._write() as db:
            db.execute("UPDATE units SET status = 'queued', owner = NULL WHERE key = ? AND "
                       "owner = ? AND status = 'running'", (key, self.owner))

    # ------------------------------------------------------------ reading

    def record(self, key: str) -> Record | None:
        rows = self._select("WHERE key = ?", (key,))
        return rows[0] if rows else None

    def records(self, *, study: str | None = None, status: str | None = None) -> list[Record]:
        """Records filtered by study and status, in order of study, model, config, seed."""
        where, args = [], []
        if study is not None:
            where.append("study = ?")
            args.append(study)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause + " ORDER BY study, model, config, seed", tuple(args))

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall()
        return dict(rows)

    def _select(self, clause: str, args: tuple) -> list[Record]:
        rows = self._db.execute(
            "SELECT key, study, profile, model, seed, config, status, attempts, result, error, "
            f"finished, wall FROM units {clause}", args).fetchall()
        out = []
        for key, study, profile, model, seed, config, status, attempts, result, error, \
                finished, wall in rows:
            parsed = None
            if result is not None:
                try:
                    parsed = Result.model_validate_json(result)
                except ValidationError as err:
                    raise AssayError(f"stored result of unit {key} ({study}) no longer parses "
                                     f"({err.errors()[0]['msg']}); rerun it with a fresh "
                                     "--store") from None
            out.append(Record(key, study, profile, model, seed, json.loads(config), status,
                              attempts, parsed, error, finished, wall, self.unit_dir(key)))
        return out


def _alive(owner: str | None, heartbeat: float | None, now: float) -> bool:
    """Is the process that claimed a unit still running?"""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return heartbeat is not None and now - heartbeat < STALE_SECONDS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    try:  # a killed child that nobody has waited for yet is a zombie: dead
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
