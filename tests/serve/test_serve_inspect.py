"""Inspect runs an exported world task on the xs organism twice: in process through assay's
provider (``--model assay/organism:xs``) and through `assay serve` with Inspect's own
OpenAI-compatible provider. Both give assay's greedy answers, sample by sample."""

import pytest
from conftest import MODEL

from assay.export import export_inspect, task_name

pytestmark = pytest.mark.slow

EVAL, WORLD, N = "facts-heldout", "xs", 40


def _run(task_dir, name, model, log_dir):
    from inspect_ai import eval as inspect_eval

    (log,) = inspect_eval(f"{name}.py", model=model, log_dir=str(log_dir), display="none",
                          log_format="json")
    assert log.status == "success", log.error
    answers = {s.id: s.output.completion for s in log.samples}
    correct = {s.id: s.scores["match"].value == "C" for s in log.samples}
    (score,) = log.results.scores
    return answers, correct, score.metrics["accuracy"].value


def test_inspect_in_process_and_through_the_server_agree_with_assay(server, xs_lm, tmp_path,
                                                                   monkeypatch):
    from assay.world import World, WorldConfig
    from assay.world.evals import world_eval

    url, _ = server
    task = export_inspect(EVAL, tmp_path / "task", world=WORLD, limit=N)
    name = task_name(EVAL, WORLD)
    monkeypatch.chdir(task)  # Inspect takes task files by relative path
    local = _run(task, name, f"assay/{MODEL}", tmp_path / "logs-local")
    monkeypatch.setenv("ASSAY_BASE_URL", url)
    monkeypatch.setenv("ASSAY_API_KEY", "unused")
    served = _run(task, name, f"openai-api/assay/{MODEL}", tmp_path / "logs-served")

    items = world_eval(World(WorldConfig.preset(WORLD)), EVAL)[:N]
    ours = dict(zip((i.id for i in items),
                    xs_lm.generate([i.question for i in items], 16, chat=True)))
    truth = {i.id: i.choices[i.answer] for i in items}
    for answers, correct, accuracy in (local, served):
        assert answers == ours  # assay's greedy answers, whichever way Inspect reached them
        assert correct == {k: ours[k].strip() == truth[k] for k in truth}
        assert accuracy == pytest.approx(sum(correct.values()) / N, abs=1e-12)
    assert 0 < local[2] < 1  # some right, some wrong: the comparison means something


def test_inspect_provider_refuses_unknown_model_arguments(xs_organism):
    from inspect_ai.model import get_model

    from assay.errors import AssayError

    with pytest.raises(AssayError, match="unknown model argument.*max_bach"):
        get_model(f"assay/{MODEL}", max_bach=4)


def test_inspect_command_line_finds_the_provider_through_its_entry_point(xs_organism, tmp_path):
    """``inspect eval TASK --model assay/organism:xs`` in a fresh process: Inspect loads the
    provider from assay's ``inspect_ai`` entry point, nothing imported by hand."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    task = export_inspect(EVAL, tmp_path / "task", world=WORLD, limit=6)
    name = task_name(EVAL, WORLD)
    inspect = Path(sys.executable).with_name("inspect")
    done = subprocess.run([str(inspect), "eval", f"{name}.py", "--model", f"assay/{MODEL}",
                           "--log-dir", str(tmp_path / "logs"), "--log-format", "json",
                           "--display", "none"],
                          cwd=task, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (log,) = (tmp_path / "logs").glob("*.json")
    result = json.loads(log.read_text())
    assert result["status"] == "success"
    assert result["eval"]["model"] == f"assay/{MODEL}" and len(result["samples"]) == 6
