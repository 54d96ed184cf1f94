"""``--model assay``: lm-eval's command line scores the exported world task through assay's
wrapper, in process, with the log-likelihoods assay's own scorer gives."""

import json

import numpy as np
import pytest

from assay.export import export_lm_eval, task_name
from assay.methods.evaluation import score_items
from assay.world import World, WorldConfig
from assay.world.evals import world_eval

pytestmark = pytest.mark.slow

EVAL, WORLD, N = "facts-heldout", "xs", 40


def test_lm_eval_command_line_with_model_assay_matches_assay(xs_organism, offline, tmp_path,
                                                              monkeypatch):
    from assay.interop.lmeval import main
    from assay.models import load

    folder, _ = xs_organism
    task = export_lm_eval(EVAL, tmp_path / "task", world=WORLD, limit=N)
    name = task_name(EVAL, WORLD)
    monkeypatch.chdir(tmp_path)
    main(["run", "--model", "assay", "--model_args", f"model=hf:{folder}", "--batch_size", "16",
          "--tasks", name, "--include_path", str(task), "--output_path", str(tmp_path / "out"),
          "--log_samples"])
    (results,) = tmp_path.glob("out/**/results_*.json")
    (logged,) = tmp_path.glob(f"out/**/samples_{name}_*.jsonl")
    samples = {}
    for line in logged.read_text().splitlines():
        s = json.loads(line)
        samples[s["doc"]["id"]] = s

    lm = load(f"hf:{folder}")
    items = world_eval(World(WorldConfig.preset(WORLD)), EVAL)[:N]
    scores, answers = score_items(lm, items)
    assert sorted(samples) == sorted(item.id for item in items)
    for item, ours in zip(items, scores):
        theirs = [float(r[0]) for r in samples[item.id]["filtered_resps"]]
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4, err_msg=item.id)
    acc = np.mean([int(np.argmax(s)) == a for s, a in zip(scores, answers)])
    reported = json.loads(results.read_text())["results"][name]["acc,none"]
    assert reported == pytest.approx(acc, abs=1e-12)
    assert 0 < acc < 1  # some right, some wrong: the argmax check means something


def test_model_assay_rolling_and_generation(xs_organism):
    """A rolling log-likelihood that fits one window is the log-probability of every token
    after BOS; a longer text is cut into windows whatever the batch size; generation is
    assay's greedy text cut at the first stop string."""
    from lm_eval.api.instance import Instance

    from assay.interop.lmeval import AssayLM

    folder, _ = xs_organism
    harness = AssayLM(model=f"hf:{folder}", batch_size=4)
    lm = harness.lm

    def rolling(h, text):
        return h.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]

    short = "Toutrin Laimley was born in Dafeavale."
    assert rolling(harness, short) == pytest.approx(
        lm.score([lm.tokenizer.bos_token], [short])[0].logprob, abs=1e-4)
    long = " ".join([short] * 40)
    assert rolling(harness, long) == pytest.approx(  # one window: one pass
        lm.score([lm.tokenizer.bos_token], [long])[0].logprob, abs=1e-3)
    narrow = AssayLM(model=f"hf:{folder}", batch_size=4, max_length=64)
    narrow_one_by_one = AssayLM(model=f"hf:{folder}", batch_size=1, max_length=64)
    assert len(lm.encode([long])[0]) > 3 * 64  # four windows or more, batched or not
    assert rolling(narrow, long) == pytest.approx(rolling(narrow_one_by_one, long), abs=1e-3)
    assert abs(rolling(narrow, long) - rolling(harness, long)) > 0.1  # the windows took effect

    question = lm.chat_prompt("Where was Toutrin Laimley born?")
    full = lm.generate([question], 16)[0]
    assert len(full) >= 2  # the organism answers something
    stop = full[len(full) // 2:]
    request = Instance("generate_until", {}, (question, {"until": [stop], "max_gen_toks": 16}), 0)
    assert harness.generate_until([request]) == [full[:len(full) // 2]]


def test_model_assay_refuses_bad_arguments(xs_organism):
    from assay.errors import AssayError
    from assay.interop.lmeval import AssayLM

    with pytest.raises(AssayError, match="needs a model spec"):
        AssayLM()
    with pytest.raises(AssayError, match="unknown model argument.*temperatur"):
        AssayLM(model=f"hf:{xs_organism[0]}", temperatur=0)


def test_registering_assay_keeps_lm_eval_own_models():
    """In a fresh interpreter (lm-eval fills its registry only while it is empty, so the
    order of first use matters): after `register`, lm-eval's own models still resolve."""
    import subprocess
    import sys

    code = ("from assay.interop.lmeval import AssayLM, register; register(); "
            "from lm_eval.api.registry import get_model; "
            "assert get_model('assay') is AssayLM; "
            "print(get_model('local-completions').__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "LocalCompletionsAPI"
