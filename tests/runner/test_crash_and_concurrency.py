"""`assay run` in real subprocesses: killed with SIGKILL mid-unit, and two runs on one store.

A toy unit blocks mid-way on a FIFO; opening the FIFO for writing returns exactly when the
subprocess is inside that unit, so the tests need no sleeps or timing guesses.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TIMEOUT = 240
TESTS = Path(__file__).parents[1]  # holds toy_runner_study.py


def assay_env(home: Path) -> dict:
    """Environment for an `assay` subprocess that knows the toy study."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "ASSAY_HOME": str(home), "PYTHONPATH": path,
            "ASSAY_STUDY_MODULES": "toy_runner_study", "OMP_NUM_THREADS": "1"}


def assay_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "assay.cli", *args]


class Gate:
    """The writing end of a FIFO the toy study reads from: ``wait`` returns once it blocks."""

    def __init__(self, path):
        self.path = str(path)
        os.mkfifo(self.path)
        self._fd = None
        self._thread = threading.Thread(target=self._open, daemon=True)
        self._thread.start()

    def _open(self):
        self._fd = os.open(self.path, os.O_WRONLY)  # blocks until the unit opens it to read

    def wait(self, proc) -> None:
        self._thread.join(TIMEOUT)
        if self._fd is None:  # the unit never got there: unblock our thread, then fail
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
            self._thread.join(5)
            out, err = proc.communicate(timeout=TIMEOUT) if proc.poll() is not None else ("", "")
            pytest.fail(f"the unit never reached the gate: {err[-2000:]}")

    def release(self) -> None:
        os.write(self._fd, b"go\n")
        os.close(self._fd)


def _run(tmp_path, store, *extra, **kwargs):
    args = ["run", "toy-runner", "--model", "organism:xs", "--store", str(store), "--json",
            "--set", f"log={tmp_path / 'log.txt'}", *extra]
    return subprocess.Popen(assay_cmd(*args), env=assay_env(tmp_path / "home"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _log(tmp_path):
    return (tmp_path / "log.txt").read_text().splitlines()


def _db(store):
    return sqlite3.connect(store / "store.db")


def test_sigkill_mid_unit_loses_nothing_finished(tmp_path):
    store = tmp_path / "store"
    block = ["--seeds", "4", "--set", "block_seed=2", "--set", f"fifo={tmp_path / 'gate'}"]
    gate = Gate(tmp_path / "gate")
    proc = _run(tmp_path, store, *block)
    gate.wait(proc)  # the process is now inside unit seed=2, its scratch folder half-written
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    gate._fd and os.close(gate._fd)

    db = _db(store)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = dict(db.execute("SELECT seed, status FROM units").fetchall())
    assert rows == {0: "done", 1: "done", 2: "running"}
    assert list((store / "units").glob(".tmp-*")), "the killed unit left its scratch folder"
    done_before = db.execute("SELECT key, result, finished FROM units WHERE status = 'done' "
                             "ORDER BY seed").fetchall()
    db.close()
    assert _log(tmp_path) == ["start 0", "end 0", "start 1", "end 1", "start 2"]

    os.unlink(tmp_path / "gate")
    gate = Gate(tmp_path / "gate")
    proc = _run(tmp_path, store, *block)
    gate.wait(proc)
    gate.release()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    units = json.loads(out)
    assert sorted(u["seed"] for u in units) == [0, 1, 2, 3]
    for u in units:  # measured: 400 flips of a 0.7 coin, each seed its own draw
        assert abs(u["metrics"]["heads"]["value"] - 0.7) < 0.07
    # seeds 0 and 1 were not recomputed; seed 2 was redone from the start, seed 3 run once
    assert _log(tmp_path)[5:] == ["start 2", "end 2", "start 3", "end 3"]
    db = _db(store)
    assert db.execute("SELECT key, result, finished FROM units WHERE seed IN (0, 1) "
                      "ORDER BY seed").fetchall() == done_before
    assert dict(db.execute("SELECT seed, attempts FROM units").fetchall()) == \
        {0: 1, 1: 1, 2: 2, 3: 1}
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not list((store / "units").glob(".tmp-*"))
    for u in units:
        assert [os.path.basename(a) for a in u["artifacts"]] == ["partial.txt"]
    assert (store / "report.html").is_file()


def test_two_runs_on_one_store_share_the_units(tmp_path):
    store = tmp_path / "store"
    args = ["--seeds", "6", "--set", "block_seed=0", "--set", f"fifo={tmp_path / 'gate'}",
            "--no-report"]
    gate = Gate(tmp_path / "gate")
    first = _run(tmp_path, store, *args)
    gate.wait(first)  # the first run holds unit seed=0 ...
    second = _run(tmp_path, store, *args)  # ... so the second must leave it and do the rest
    try:
        seen = []
        for line in second.stderr:  # the second run reports when only seed 0 is left
            seen.append(line)
            if line.startswith("waiting for"):
                break
        assert seen and seen[-1].startswith("waiting for 1 unit(s)"), "".join(seen)
        assert sum(" done " in line for line in seen) == 5
        gate.release()
        out1, err1 = first.communicate(timeout=TIMEOUT)
        out2, err2 = second.communicate(timeout=TIMEOUT)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    for out in (out1, out2):
        assert sorted(u["seed"] for u in json.loads(out)) == list(range(6))
    starts = [line for line in _log(tmp_path) if line.startswith("start")]
    assert sorted(starts) == [f"start {s}" for s in range(6)], "a unit ran twice or never"
