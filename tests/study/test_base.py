import re
from typing import ClassVar

import pytest
from pydantic import ValidationError

from assay.errors import AssayError
from assay.methods.stats import wilson
from assay.study import (
    Control,
    ModelSpec,
    Needs,
    Provenance,
    Result,
    StudyConfig,
    Verdict,
    collect_provenance,
    git_revision,
)


class Sweep(StudyConfig):
    steps: int = 10        # finetuning steps
    lr: float = 1e-3       # learning rate
    lora: bool = False     # finetune through LoRA
    layers: list[int] = [1, 2]  # layers probed
    name: str = "base"     # a label

    FULL: ClassVar[dict] = {"steps": 300, "layers": [0, 1, 2, 3]}


def test_profiles_quick_and_full():
    quick, full = Sweep.make(), Sweep.make("full")
    assert (quick.steps, quick.layers) == (10, [1, 2])
    assert (full.steps, full.layers, full.lr) == (300, [0, 1, 2, 3], 1e-3)


def test_unknown_profile_lists_profiles():
    with pytest.raises(AssayError, match="unknown profile 'fast'.*quick, full"):
        Sweep.make("fast")


def test_sets_parse_into_field_types():
    cfg = Sweep.make("full", {"steps": "42", "lr": "0.5", "lora": "true", "layers": "[3]",
                              "name": "x=1"})
    assert cfg.steps == 42 and isinstance(cfg.steps, int)
    assert cfg.lr == 0.5 and isinstance(cfg.lr, float)
    assert cfg.lora is True
    assert cfg.layers == [3]
    assert cfg.name == "x=1"
    assert Sweep.make(sets={"lora": "0"}).lora is False


def test_unknown_key_lists_valid_keys():
    with pytest.raises(AssayError) as err:
        Sweep.make(sets={"foo": "1"})
    assert str(err.value) == ("unknown config key 'foo' for study Sweep: "
                              "valid keys are steps, lr, lora, layers, name")


def test_bad_value_names_key_value_and_type():
    for key, raw, expected in [("steps", "ten", "int"), ("lr", "fast", "float"),
                               ("lora", "maybe", "bool"), ("layers", "1,2", "list[int]")]:
        with pytest.raises(AssayError) as err:
            Sweep.make(sets={key: raw})
        msg = str(err.value)
        assert "\n" not in msg
        assert re.fullmatch(rf"bad value '{re.escape(raw)}' for config key '{key}' of study Sweep: "
                            rf"expected {re.escape(expected)}", msg), msg


def test_config_is_frozen_and_forbids_extra():
    with pytest.raises(ValidationError):
        Sweep.make().steps = 3
    with pytest.raises(ValidationError):
        Sweep(bogus=1)


def test_full_with_unknown_key_is_rejected_at_definition():
    with pytest.raises(AssayError, match="FULL sets unknown key"):
        class Broken(StudyConfig):
            a: int = 1
            FULL: ClassVar[dict] = {"b": 2}


def test_digest_stable_and_sensitive():
    d = Sweep.make().digest()
    assert re.fullmatch(r"[0-9a-f]{16}", d)
    assert d == Sweep.make().digest() == Sweep(steps=10).digest()
    assert Sweep.make(sets={"steps": "11"}).digest() != d
    assert Sweep.make(sets={"layers": "[2, 1]"}).digest() != d
    assert Sweep.make("full").digest() != d


def test_result_round_trips_with_provenance():
    est = wilson(7, 20)
    verdict = Verdict(status="inconclusive", test="CI straddles 0.5", statement="rate 0.35")
    result = Result(
        metrics={"rate": est},
        tables={"t": [{"a": 1, "b": "x", "c": 0.5, "d": None}]},
        figures=["curve.png"],
        verdict=verdict,
        control=Control(verdict=verdict.model_copy(update={"status": "supported"}),
                        metrics={"rate": wilson(1, 20)}, condition="nothing to find"),
        provenance=collect_provenance(Sweep.make(), seed=0, profile="quick", model="organism:s",
                                      organisms={"s": "abc"}, wall_seconds=1.5, flops=2e9),
        notes=["n is small"],
    )
    again = Result.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.metrics["rate"].ci_low == est.ci_low
    assert again.status == "confounded"  # the control read "supported"
    unmeasured = result.model_copy(update={"metrics": {"rate": est.model_copy(
        update={"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")})}})
    back = Result.model_validate_json(unmeasured.model_dump_json())  # NaN survives the store
    assert all(v != v for v in (back.metrics["rate"].value, back.metrics["rate"].ci_high))
    with pytest.raises(ValidationError):
        Verdict(status="maybe", test="", statement="")


def test_collect_provenance_fields():
    prov = collect_provenance(Sweep.make(), seed=1, profile="quick", model="organism:xs")
    assert isinstance(prov, Provenance)
    assert set(prov.packages) == {"assay", "torch", "transformers", "numpy"}
    assert all(isinstance(v, str) and v for v in prov.packages.values())
    assert prov.config == {"steps": 10, "lr": 1e-3, "lora": False, "layers": [1, 2], "name": "base"}
    assert isinstance(prov.git_revision, str) and prov.git_revision
    assert re.fullmatch(r"unknown|[0-9a-f]{40}(-dirty)?", prov.git_revision)
    assert {"platform", "python", "cpus", "torch_threads", "cuda_device"} <= set(prov.hardware)
    assert prov.flops is None


def test_git_revision_never_raises(tmp_path):
    assert git_revision(tmp_path) == "unknown"  # not a repository
    assert git_revision(tmp_path / "missing") == "unknown"


def test_needs_are_checked_against_the_spec_before_loading(tmp_path):
    import assay.training  # noqa: F401  (registers organism:)

    s = ModelSpec.parse("organism:s")
    assert Needs(organism=True, trainable=True).unmet(s) is None
    folder = tmp_path / "tiny"
    folder.mkdir()
    hf = ModelSpec.parse(f"hf:{folder}")
    assert "needs an organism" in Needs(organism=True).unmet(hf, "demo")
    assert "needs a chat model" in Needs(chat=True).unmet(hf, "demo")  # no chat template
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    assert Needs(chat=True, trainable=True).unmet(hf) is None
    assert Needs(chat=True).unmet(ModelSpec.parse("hf:some-org/some-model")) is None  # told on load


def test_model_spec_parses_once_and_prints_back():
    spec = ModelSpec.parse("organism:s@pretrain")
    assert (spec.scheme, spec.name, spec.stage) == ("organism", "s", "pretrain")
    assert str(spec) == "organism:s@pretrain" and spec.organism == "s@pretrain"
    assert ModelSpec.parse(spec) is spec
    assert ModelSpec.parse("hf:/a/b@c") == ModelSpec("hf", "/a/b@c")
    for bad in ("s", "gpt:x", "organism:", "organism:s@"):
        with pytest.raises(AssayError, match="organism:NAME"):
            ModelSpec.parse(bad)


def test_train_seeds_are_one_or_more_distinct_seeds_in_every_study_that_trains():
    from assay.study import StudyConfig, TrainSeeds, discover, get_study

    class Config(StudyConfig):
        train_seeds: TrainSeeds = [0]

    assert Config.make("quick", {"train_seeds": "[0, 2]"}).train_seeds == [0, 2]
    for bad in ("[]", "[1, 1]", "[-1]"):
        with pytest.raises(AssayError, match="distinct training seeds"):
            Config.make("quick", {"train_seeds": bad})
    discover()
    trains = [name for name in ("backdoor-poison-count", "backdoor-persistence", "contamination",
                                "sandbagging-noise", "unlearning-tradeoff",
                                "unlearning-hidden-not-deleted", "emergence-metric",
                                "scaling-laws")
              if get_study(name).make_config("full").train_seeds == [0, 1, 2]]
    assert len(trains) == 8  # the full profile of every study that trains resamples 3 runs
