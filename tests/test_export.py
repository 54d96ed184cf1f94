"""`assay export lm-eval`: lm-eval scores the exported task exactly as assay scores it."""

import json
import sys

import numpy as np
import pytest

from assay.export import export_lm_eval, task_name
from assay.methods.evaluation import Format, format_grid, render, score_items
from assay.world import World, WorldConfig
from assay.world.evals import world_eval

EVAL, WORLD, N = "facts-heldout", "xs", 40  # held-out people: the organism gets most wrong


@pytest.mark.slow
def test_lm_eval_scores_the_same_tokens_as_assay(xs_organism, offline, tmp_path):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from assay.models import load

    folder, _ = xs_organism
    task = export_lm_eval(EVAL, tmp_path / "task", world=WORLD, limit=N)
    name = task_name(EVAL, WORLD)
    hflm = HFLM(pretrained=str(folder), dtype="float32", add_bos_token=True, device="cpu",
                batch_size=16)
    tasks = TaskManager(include_path=str(task), include_defaults=False)  # not lm-eval's own
    out = lm_eval.simple_evaluate(model=hflm, tasks=[name], task_manager=tasks, log_samples=True,
                                  bootstrap_iters=0, random_seed=None, numpy_random_seed=None,
                                  torch_random_seed=None)  # leave the global RNGs alone
    samples = {s["doc"]["id"]: s for s in out["samples"][name]}

    lm = load(f"hf:{folder}")
    items = world_eval(World(WorldConfig.preset(WORLD)), EVAL)[:N]
    scores, answers = score_items(lm, items)
    assert sorted(samples) == sorted(item.id for item in items)
    for item, ours in zip(items, scores):
        sample = samples[item.id]
        prompt, continuations, _ = render(item, Format(), lm.chat_prompt)
        assert [tuple(a) for a in sample["arguments"]] == [(prompt, c) for c in continuations]
        theirs = [ll for ll, _ in sample["filtered_resps"]]  # one (loglik, greedy) per choice
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4, err_msg=item.id)
    acc = np.mean([int(np.argmax(s)) == a for s, a in zip(scores, answers)])
    assert out["results"][name]["acc,none"] == pytest.approx(acc, abs=1e-12)
    assert 0 < acc < 1  # some items right, some wrong: the argmax check means something


def test_every_format_splits_where_lm_eval_splits(xs_organism):
    """lm-eval tokenizes context + continuation at once and cuts after the context's tokens;
    assay tokenizes them apart. Both give the same ids in every format of the grid."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(xs_organism[0])
    items = world_eval(World(WorldConfig.preset(WORLD)), "facts")[::50]
    for fmt in format_grid(24, seed=0):
        for item in items:
            prompt, continuations, _ = render(item, fmt, _chat_prompt(tok))
            assert prompt == prompt.rstrip(), fmt.name  # lm-eval would move the space
            head = tok(prompt)["input_ids"]
            for c in continuations:
                whole = tok(prompt + c)["input_ids"]
                assert whole == head + tok(c, add_special_tokens=False)["input_ids"], fmt.name


def _chat_prompt(tok):
    return lambda user: tok.apply_chat_template([{"role": "user", "content": user}],
                                                add_generation_prompt=True, tokenize=False)


def _assay(*args, cwd, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    from assay.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["assay", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_unknown_eval_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = _assay("export", "lm-eval", "nope", "out", "--world", WORLD, cwd=tmp_path,
                          monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown evaluation 'nope': choose one of facts" in lines[0]
    assert not list(tmp_path.iterdir()), "a failed export must write nothing"


def test_non_empty_folder_is_refused_and_left_alone(tmp_path, monkeypatch, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    code, _, err = _assay("export", "lm-eval", "facts", "out", "--world", WORLD, cwd=tmp_path,
                          monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "exists and is not empty" in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_export_writes_task_data_and_readme(tmp_path, monkeypatch, capsys):
    (tmp_path / "out").mkdir()  # an empty folder is fine
    code, out, err = _assay("export", "lm-eval", "facts", "out", "--world", WORLD, "--limit",
                            "5", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    folder = tmp_path / "out"
    assert out.strip() == str(folder.resolve())
    assert sorted(p.name for p in folder.iterdir()) == \
        ["README.md", "assay_facts_xs.jsonl", "assay_facts_xs.yaml"]
    assert len((folder / "assay_facts_xs.jsonl").read_text().splitlines()) == 5
    assert f'test: "{folder.resolve() / "assay_facts_xs.jsonl"}"' in \
        (folder / "assay_facts_xs.yaml").read_text()
    assert "add_bos_token=True" in (folder / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    import assay.export

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(assay.export, "_readme", broken)  # fails after the data is written
    with pytest.raises(OSError, match="disk full"):
        export_lm_eval("facts", tmp_path / "out", world=WORLD, limit=5)
    assert not list(tmp_path.iterdir())


def test_export_inspect_writes_task_and_samples(tmp_path, monkeypatch, capsys):
    code, out, err = _assay("export", "inspect", "facts-heldout", "out", "--world", WORLD,
                            "--limit", "6", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    folder = tmp_path / "out"
    assert out.strip() == str(folder.resolve())
    name = "assay_facts_heldout_xs"
    assert sorted(p.name for p in folder.iterdir()) == \
        ["README.md", f"{name}.jsonl", f"{name}.py"]
    rows = [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]
    items = world_eval(World(WorldConfig.preset(WORLD)), "facts-heldout")[:6]
    assert [(r["id"], r["input"], r["target"]) for r in rows] == \
        [(i.id, i.question, i.choices[i.answer]) for i in items]
    source = (folder / f"{name}.py").read_text()
    compile(source, f"{name}.py", "exec")
    assert f"def {name}() -> Task:" in source and 'match(location="exact"' in source
    assert f"--model assay/organism:{WORLD}" in (folder / "README.md").read_text()


def test_export_inspect_refuses_like_lm_eval(tmp_path, monkeypatch, capsys):
    code, _, err = _assay("export", "inspect", "facts", "out", "--world", "zz", cwd=tmp_path,
                          monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown world 'zz'" in err
    assert not list(tmp_path.iterdir())
