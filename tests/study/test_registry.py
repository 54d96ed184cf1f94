"""A toy coin estimates its own bias.

Claim: a coin drawn with bias `p` from a seeded generator lands heads more often than not.
Negative control: a fair coin must not.
"""

from typing import ClassVar

import pytest

from assay.errors import AssayError
from assay.methods.stats import wilson
from assay.study import (
    Above,
    Context,
    Control,
    Needs,
    Result,
    StudyConfig,
    discover,
    get_study,
    studies,
    studies_for,
    study,
)


class ToyConfig(StudyConfig):
    n: int = 200    # coin flips
    p: float = 0.7  # the coin's bias

    FULL: ClassVar[dict] = {"n": 5000}


def run_toy(cfg: ToyConfig, ctx: Context) -> Result:
    heads = int((ctx.rng.random(cfg.n) < cfg.p).sum())
    est = wilson(heads, cfg.n)
    fair = wilson(int((ctx.rng.random(cfg.n) < 0.5).sum()), cfg.n)
    ctx.report("flipped", 1.0)
    return Result(
        metrics={"heads": est},
        tables={"flips": [{"n": cfg.n, "heads": heads}]},
        control=Control(metrics={"heads": fair}, condition="a fair coin"),
        notes=["toy"],
    )


def toy_rule(cfg: ToyConfig) -> Above:
    return Above("heads", bar=0.5, low=0.0, high=1.0, what="heads rate")


def register(id="toy-coin", agenda=("2.1", "3.6"), needs=Needs(chat=False), **rules):
    return study(id, agenda=list(agenda), needs=needs, **({"rule": toy_rule} | rules))(run_toy)


def test_registration_reads_config_title_and_claim():
    register()
    spec = get_study("toy-coin")
    assert spec.config is ToyConfig
    assert spec.agenda == ("2.1", "3.6")
    assert spec.needs == Needs(chat=False)
    assert spec.title == "A toy coin estimates its own bias."
    assert spec.claim.startswith("Claim: a coin drawn with bias")
    assert spec.claim.endswith("must not.")
    assert spec.module == __name__
    assert spec.run is run_toy
    assert spec.make_config("full") == ToyConfig(n=5000)


def test_unknown_config_key_names_the_study():
    register()
    with pytest.raises(AssayError, match="unknown config key 'q' for study toy-coin: valid keys are n, p"):
        get_study("toy-coin").make_config(sets={"q": "1"})


def test_duplicate_id_rejected():
    register()
    with pytest.raises(AssayError, match="duplicate study id 'toy-coin'"):
        register()


def test_unknown_agenda_id_rejected():
    with pytest.raises(AssayError, match="unknown challenge '9.9'"):
        register(agenda=("2.1", "9.9"))
    assert studies() == []


def test_bad_study_id_and_missing_annotation_rejected():
    with pytest.raises(AssayError, match="bad study id"):
        register(id="Toy Coin")

    def unannotated(cfg, ctx):
        return None

    with pytest.raises(AssayError, match="annotate run's first parameter"):
        study("toy-bare", agenda=["2.1"], rule=toy_rule)(unannotated)


def test_a_study_declares_its_rule_and_never_writes_its_verdict(tmp_path):
    with pytest.raises(TypeError, match="rule"):
        study("toy-norule", agenda=["2.1"])(run_toy)  # the rule is required
    register()
    spec = get_study("toy-coin")
    cfg = spec.make_config()
    result = spec.run(cfg, Context(seed=0, artifacts=tmp_path))
    assert result.verdict is None and result.control.verdict is None
    judged = spec.judge(cfg, result)
    # measured: 200 flips of a 0.7 coin clear 0.5; a fair coin's interval contains it
    assert judged.verdict.status == "supported" and judged.control.verdict.status == "inconclusive"
    assert judged.status == "supported" and not judged.confounded
    assert judged.verdict.test == toy_rule(cfg).test()
    with pytest.raises(AssayError, match="wrote a verdict itself"):
        spec.judge(cfg, judged)


def test_a_control_that_fires_confounds_the_unit(tmp_path):
    register(control=lambda cfg: Above("heads", bar=0.3, low=0.0, high=1.0))
    spec = get_study("toy-coin")
    cfg = spec.make_config()
    judged = spec.judge(cfg, spec.run(cfg, Context(seed=0, artifacts=tmp_path)))
    # the fair coin's rate (about 0.5) clears 0.3: the control fires
    assert judged.verdict.status == "supported" and judged.control.verdict.status == "supported"
    assert judged.confounded and judged.status == "confounded"


def test_get_study_unknown_lists_valid_ids():
    with pytest.raises(AssayError, match="no studies are registered yet"):
        get_study("nope")
    register()
    register(id="toy-other", agenda=("4.1",))
    with pytest.raises(AssayError, match="unknown study 'nope': valid ids are toy-coin, toy-other"):
        get_study("nope")


def test_studies_sorted_and_studies_for():
    register(id="toy-zeta", agenda=("3.6",))
    register(id="toy-alpha", agenda=("2.1", "3.6"))
    assert [s.id for s in studies()] == ["toy-alpha", "toy-zeta"]
    assert studies_for("3.6") == ["toy-alpha", "toy-zeta"]
    assert studies_for("2.1") == ["toy-alpha"]
    assert studies_for("4.5") == []
    with pytest.raises(AssayError):
        studies_for("7.7")


def test_discover_registers_the_built_in_studies_and_extra_modules(monkeypatch):
    assert "safety-performance-frontier" in discover()
    monkeypatch.setenv("ASSAY_STUDY_MODULES", "no_such_module_xyz")
    with pytest.raises(AssayError, match="no_such_module_xyz"):
        discover()


def test_same_seed_same_metrics_and_result_round_trips(tmp_path):
    register()
    spec = get_study("toy-coin")
    cfg = spec.make_config()
    seen = []
    first = spec.run(cfg, Context(seed=3, artifacts=tmp_path / "a",
                                  progress=lambda m, f: seen.append((m, f))))
    again = spec.run(cfg, Context(seed=3, artifacts=tmp_path / "b"))
    other = spec.run(cfg, Context(seed=4, artifacts=tmp_path / "c"))
    assert first.metrics == again.metrics and first.control == again.control
    assert first.metrics != other.metrics  # the seed matters
    assert seen == [("flipped", 1.0)]
    # measured: 200 flips of a 0.7 coin put the rate near 0.7 and the interval around it
    est = first.metrics["heads"]
    assert est.n == 200 and abs(est.value - 0.7) < 0.1 and est.ci_low < est.value < est.ci_high
    assert Result.model_validate_json(first.model_dump_json()) == first


def test_cli_fills_agenda_and_studies_from_the_registry():
    import json

    from typer.testing import CliRunner

    from assay.cli import app

    register()
    runner = CliRunner()
    row = json.loads(runner.invoke(app, ["agenda", "3.6", "--json"]).stdout)
    assert "toy-coin" in row["studies"]
    rows = json.loads(runner.invoke(app, ["agenda", "--json"]).stdout)
    by_id = {r["id"]: r["studies"] for r in rows}
    assert "toy-coin" in by_id["2.1"] and "toy-coin" not in by_id["2.2"]
    listed = json.loads(runner.invoke(app, ["studies", "--json"]).stdout)
    toy = [s for s in listed if s["id"] == "toy-coin"]
    assert [(s["id"], s["agenda"]) for s in toy] == [("toy-coin", ["2.1", "3.6"])]
    assert toy[0]["claim"].startswith("Claim: a coin")
    assert "lies above 0.5" in toy[0]["rule"]
    assert "safety-performance-frontier" in {s["id"] for s in listed}


def test_a_study_declares_the_organisms_it_loads():
    from assay.models import ModelSpec

    with pytest.raises(AssayError, match="organisms is a function"):
        register(organisms=["xs-retain"])
    xs = ModelSpec.parse("organism:xs")
    register(id="toy-reader")
    reader = get_study("toy-reader")
    assert reader.organisms(reader.make_config(), xs) == ["xs"]  # its model, nothing else
    twin = register(id="toy-twin", organisms=lambda cfg, model: [f"{model.name}-retain", "xs"])
    spec = get_study("toy-twin")
    assert twin is run_toy and spec.organisms(spec.make_config(), xs) == ["xs", "xs-retain"]
    register(id="toy-ladder", needs=Needs(chat=False, model=False),
             organisms=lambda cfg, model: ["ladder-32-150"])
    ladder = get_study("toy-ladder")  # trains its own models: the run's model is not loaded
    assert ladder.organisms(ladder.make_config(), xs) == ["ladder-32-150"]
