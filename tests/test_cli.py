"""The command line: one-line errors with exit code 2, and the card as JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file


def _assay(*args, home):
    env = {**os.environ, "ASSAY_HOME": home}
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("spec, needle", [
    ("organism:nope", "unknown organism 'nope'"),
    ("hf:/no/such/dir", "no such folder"),
    ("foo:bar", "unknown model spec"),
])
def test_bad_model_specs_give_one_line_and_exit_2(spec, needle, tmp_path):
    r = _assay("models", "show", spec, home=str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not list(tmp_path.iterdir()), "a failed command must write nothing"


def test_pickle_only_folder_is_refused(tmp_path, xs_organism):
    folder, _ = xs_organism
    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"w": torch.zeros(1)}, bad / "pytorch_model.bin")
    r = _assay("models", "show", f"hf:{bad}", home=str(tmp_path / "home"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "pickle" in r.stderr


def test_card_json_of_the_cached_organism(assay_home, xs_organism):
    r = _assay("organisms", "card", "xs", "--json", home=assay_home)
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    assert card == xs_organism[1]


def test_usage_error_exits_2(tmp_path):
    r = _assay("organisms", "nonsense", home=str(tmp_path))
    assert r.returncode == 2


def test_agenda_json_lists_the_18_challenges(tmp_path):
    from assay.agenda import challenges

    r = _assay("agenda", "--json", home=str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(c["id"], c["title"]) for c in rows] == [(c.id, c.title) for c in challenges()]
    assert len(rows) == 18 and rows[-1]["title"] == "LLM Governance Is Lacking"
    one = json.loads(_assay("agenda", "3.6", "--json", home=str(tmp_path)).stdout)
    assert one["title"] == "Vulnerability to Poisoning and Backdoors Is Poorly Understood"
    bad = _assay("agenda", "9.9", home=str(tmp_path))
    assert bad.returncode == 2 and "choose one of 2.1" in bad.stderr


@pytest.mark.parametrize("args, needle", [
    (["run", "nope"], "unknown study 'nope': valid ids are"),
    (["run", "safety-performance-frontier", "--set", "bogus=1"],
     "unknown config key 'bogus' for study safety-performance-frontier: valid keys are shares"),
    (["run", "safety-performance-frontier", "--set", "steps=abc"], "bad value 'abc'"),
    (["run", "safety-performance-frontier", "--set", "shares=[0.5]"], "invalid config"),
    (["run", "--model", "organism:nope"], "unknown organism 'nope'"),
    (["run", "--model", "hf:/no/such/dir"], "no such folder"),
    (["run", "--seeds", "2", "--seed", "1"], "either --seeds N or --seed S"),
    (["run", "--set", "steps"], "write key=value"),
    (["show", "safety-performance-frontier"], "no result store"),
    (["show", "nope"], "unknown study 'nope'"),
    (["report"], "no result store"),
])
def test_run_show_report_errors_write_nothing(args, needle, tmp_path, monkeypatch, capsys):
    from assay.cli import main

    store = tmp_path / "store"
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", ["assay", *args, "--store", str(store)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not store.exists() and not (tmp_path / "home").exists(), "an error wrote something"


def test_a_study_whose_needs_the_model_lacks_is_refused_before_any_work(tmp_path, monkeypatch,
                                                                           capsys):
    from assay.cli import main

    folder = tmp_path / "base-model"  # a local hf folder: white-box, but not an organism
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(folder / "model.safetensors"))
    store = tmp_path / "store"
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", ["assay", "run", "causal-tracing", "--model", f"hf:{folder}",
                                      "--store", str(store)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert "study 'causal-tracing' needs an organism" in err[0] and "--model organism:s" in err[0]
    assert not store.exists() and not (tmp_path / "home").exists()


def test_the_committed_study_index_is_current():
    from assay.study import index

    committed = json.loads(index.INDEX.read_text())
    assert committed["source"] == index.source_hash(), \
        "study sources changed: run python -m assay.study.index"
    assert committed["studies"] == index.build()


@pytest.mark.parametrize("args", [["agenda", "3.6"], ["studies", "--json"],
                                  ["show", "error-bars", "--store", "{store}"]])
def test_commands_that_only_read_do_not_import_torch(args, tmp_path):
    from assay.runner.store import Store

    Store(tmp_path / "st").close()
    args = [a.replace("{store}", str(tmp_path / "st")) for a in args]
    code = ("import sys\nsys.argv = ['assay', *sys.argv[1:]]\nfrom assay.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'scipy') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_STUDY_MODULES"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_studies_of_your_own_still_show_without_an_index_entry(tmp_path):
    env = {**os.environ, "ASSAY_STUDY_MODULES": "toy_runner_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-m", "assay.cli", "studies", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "toy-runner" in {r["id"] for r in json.loads(done.stdout)}
