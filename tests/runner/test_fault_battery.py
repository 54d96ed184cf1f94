"""Faults a long run meets: kills at random moments, a full disk while publishing, and two
runs on one store with one of them killed. Every case ends with each unit done once, with
the numbers an uninterrupted run stores, and no temporary folder left."""

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest
from test_crash_and_concurrency import TIMEOUT, assay_cmd, assay_env

from assay.runner import Store, execute, plan

pytestmark = pytest.mark.slow
UNITS = ["--seeds", "5", "--set", "sleep=0.4", "--set", "figure=true", "--no-report"]


def _start(tmp_path, store):
    return subprocess.Popen(
        assay_cmd("run", "toy-runner", "--model", "organism:xs", "--store", str(store), *UNITS),
        env=assay_env(tmp_path / "home"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)


def _stored(store):
    db = sqlite3.connect(store / "store.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT key, status, result FROM units ORDER BY key").fetchall()
    finally:
        db.close()
    out = {}
    for key, status, result in rows:
        assert status == "done", (key, status)
        body = json.loads(result)
        body.pop("provenance")  # wall time and the like differ; everything else must not
        files = sorted(p.name for p in (store / "units" / key).iterdir())
        out[key] = (body, files, (store / "units" / key / "rates.png").read_bytes())
    return out


def test_ten_kills_at_random_moments_each_followed_by_a_rerun(tmp_path):
    clean = tmp_path / "clean"
    start = time.monotonic()
    proc = _start(tmp_path, clean)
    assert proc.wait(TIMEOUT) == 0, proc.stderr.read()
    span = time.monotonic() - start
    expected = _stored(clean)
    assert len(expected) == 5

    store = tmp_path / "store"
    rng = random.Random(0)
    kills = 0
    for _ in range(10):
        proc = _start(tmp_path, store)
        time.sleep(rng.uniform(0.0, span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(TIMEOUT)
    assert kills >= 5  # most of the ten landed inside a run
    proc = _start(tmp_path, store)
    assert proc.wait(TIMEOUT) == 0, proc.stderr.read()
    assert _stored(store) == expected  # every unit done once, bit for bit
    assert not list((store / "units").glob(".tmp-*"))


def test_a_full_disk_while_publishing_fails_the_unit_cleanly(toy, tmp_path, monkeypatch,
                                                             assay_home):
    monkeypatch.setenv("ASSAY_HOME", assay_home)
    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1], sets={"figure": "true"})
    real = os.replace
    full = {"on": True}

    def replace(src, dst):  # the rename into place hits a full disk, once
        if full["on"] and str(dst).endswith("result.json"):
            full["on"] = False
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with Store(tmp_path / "store") as store:
        first = execute(units, store)
        assert [r.status for r in first] == ["failed", "done"]
        assert "No space left on device" in first[0].error
        assert not first[0].folder.exists()  # never half-published
        assert not list((tmp_path / "store" / "units").glob(".tmp-*"))
        again = execute(units, store)  # the store stays readable; the rerun finishes it
        assert [r.status for r in again] == ["done", "done"]
    with Store(tmp_path / "plain") as plain:
        reference = execute(units, plain)
    assert [r.to_json()["metrics"] for r in again] == [r.to_json()["metrics"] for r in reference]


def test_two_runs_on_one_store_with_one_killed_compute_every_unit(tmp_path):
    store = tmp_path / "store"
    first, second = _start(tmp_path, store), _start(tmp_path, store)
    time.sleep(4.0)  # both are inside the run by now
    first.send_signal(signal.SIGKILL)
    first.wait(TIMEOUT)
    assert second.wait(TIMEOUT) == 0, second.stderr.read()
    # the survivor waited for the units the killed run held only while it lived, then took them
    clean = tmp_path / "clean"
    proc = _start(tmp_path, clean)
    assert proc.wait(TIMEOUT) == 0
    assert _stored(store) == _stored(clean)
    assert not list((store / "units").glob(".tmp-*"))
