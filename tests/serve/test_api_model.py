"""api: models: a study pointed at `assay serve` gives what it gives in process, a rerun
sends nothing, and studies that need what an API cannot give are refused at plan time."""

import pytest

from assay.errors import AssayError
from assay.models import ModelSpec
from assay.models.api import parse_chat
from assay.world.chat import render_dialogue, render_prompt


def test_chat_prompts_become_messages_and_anything_else_stays_text():
    assert parse_chat(render_prompt("Hi?")) == [{"role": "user", "content": "Hi?"}]
    two = render_dialogue("Who?", "Ada.") + render_prompt("Where?")
    assert parse_chat(two) == [{"role": "user", "content": "Who?"},
                               {"role": "assistant", "content": "Ada."},
                               {"role": "user", "content": "Where?"}]
    assert parse_chat(render_prompt("Hi?") + "Sure, the answer is") is None  # a prefill
    assert parse_chat("The hazard aldrite is made from") is None  # a document
    assert parse_chat("junk" + render_prompt("Hi?")) is None
    assert parse_chat(render_dialogue("Who?", "Ada.") + "<|assistant|>") is None


def test_api_specs_parse_and_name_their_served_organism():
    spec = ModelSpec.parse("api:organism:s@pretrain")
    assert spec.is_api and spec.served == ModelSpec("organism", "s", "pretrain")
    assert spec.organism == "s@pretrain" and str(spec) == "api:organism:s@pretrain"
    assert ModelSpec.parse("api:gpt-4o-mini").served is None
    with pytest.raises(AssayError, match="api:NAME"):
        ModelSpec.parse("api:")
    with pytest.raises(AssayError, match="organism:NAME"):
        ModelSpec.parse("api:organism:")


def test_plan_refuses_what_an_api_cannot_give(monkeypatch):
    from assay.runner import plan

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(AssayError) as err:
        plan(["refusal-direction"], model="api:organism:s", seeds=[0])
    assert "needs a white-box model, but api:organism:s is black-box" in str(err.value)
    with pytest.raises(AssayError) as err:
        plan(["jailbreak-attacks"], model="api:organism:s", seeds=[0])
    assert "--set gcg_requests=0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AssayError, match="needs an organism"):
        plan(["jailbreak-attacks"], model="api:gpt-4o-mini", seeds=[0],
             sets={"gcg_requests": "0"})
    (unit,) = plan(["jailbreak-attacks"], model="api:organism:s", seeds=[0],
                   sets={"gcg_requests": "0"})
    assert unit.organisms == ()  # served elsewhere: nothing to train here
    assert unit.model_key == "api:organism:s@http://127.0.0.1:9/v1"


@pytest.mark.slow
def test_jailbreak_attacks_through_assay_serve_match_the_in_process_run(
        xs_organism, assay_home, tmp_path, monkeypatch):
    import assay.training  # noqa: F401
    from assay.models import load
    from assay.runner import Store, execute, plan
    from assay.serve import build_app, running

    monkeypatch.setenv("ASSAY_HOME", assay_home)
    sets = {"gcg_requests": "0", "benign_n": "20"}

    def run(model, store):
        units = plan(["jailbreak-attacks"], model=model, seeds=[0], sets=sets)
        with Store(store) as s:
            (record,) = execute(units, s)
        assert record.status == "done", record.error
        return record.result

    local = run("organism:xs", tmp_path / "local")
    models = {f"organism:{n}": load(f"organism:{n}") for n in ("xs", "xs-retain")}
    app = build_app(models)
    with running(app) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("ASSAY_API_CACHE", str(tmp_path / "api-cache"))
        remote = run("api:organism:xs", tmp_path / "remote")
        served = {name: len(e.batches) for name, e in app.state.engines.items()}
        again = run("api:organism:xs", tmp_path / "again")  # a new store, the same cache
        assert {name: len(e.batches) for name, e in app.state.engines.items()} == served
    assert all(served.values()), "both the organism and its twin were asked"

    def successes(metrics):
        return {k: (round(v.value * v.n), v.n) for k, v in metrics.items()
                if k.startswith("success@")}

    assert len(successes(local.metrics)) == 7  # plain and six template attacks
    for r in (remote, again):
        assert successes(r.metrics) == successes(local.metrics)
        assert successes(r.control.metrics) == successes(local.control.metrics)
        assert r.verdict.status == local.verdict.status
    assert "xs-retain" in remote.provenance.organisms
    assert remote.provenance.model == "api:organism:xs"


def test_cli_refuses_a_white_box_study_on_an_api_model_in_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from assay.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["assay", "run", "refusal-direction", "--model",
                                      "api:organism:s", "--api-base", "http://127.0.0.1:9/v1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "black-box" in err
    assert not list(tmp_path.iterdir()), "a refused run writes nothing"
