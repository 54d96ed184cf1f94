import re
from typing import ClassVar

import pytest
from pydantic import ValidationError

from assay.errors import AssayError
from assay.methods.stats import wilson
from assay.studies import (
    Control,
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
        control=Control(verdict=verdict, metrics={"rate": wilson(1, 20)}),
        provenance=collect_provenance(Sweep.make(), seed=0, profile="quick", model="organism:s",
                                      organisms={"s": "abc"}, wall_seconds=1.5, flops=2e9),
        notes=["n is small"],
    )
    again = Result.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.metrics["rate"].ci_low == est.ci_low
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


class _Tok:
    chat_template = None


class _NoTorch:
    model = object()
    tokenizer = _Tok()


def test_needs_refuses_models_that_lack_them():
    with pytest.raises(AssayError, match="needs a white-box model.*api:x is not a local torch model"):
        Needs().check(_NoTorch(), "api:x", study="demo")
    with pytest.raises(AssayError, match="needs a trainable model"):
        Needs(white_box=False, trainable=True).check(_NoTorch(), "api:x")


def test_needs_chat_requires_a_chat_template():
    import torch

    class Tiny:
        model = torch.nn.Linear(2, 2)
        tokenizer = _Tok()

    Needs(chat=False, trainable=True).check(Tiny(), "hf:tiny")  # passes
    with pytest.raises(AssayError, match="needs a chat model, but hf:tiny's tokenizer has no chat template"):
        Needs().check(Tiny(), "hf:tiny")
    Tiny.tokenizer = type("Chat", (), {"chat_template": "{{ messages }}"})()
    Needs(trainable=True).check(Tiny(), "hf:tiny")
