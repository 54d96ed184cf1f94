"""Every registered study conforms to the contract (`assay.study.conformance.check_study`)."""

import pytest

import assay.training  # noqa: F401  (registers the organism: scheme the studies' configs use)
from assay.study import Above, discover, get_study
from assay.study.conformance import check_study
from assay.study.registry import _REGISTRY

IDS = discover()


def test_the_catalogue_is_not_empty():
    assert len(IDS) >= 25


@pytest.mark.parametrize("study_id", IDS)
def test_study_conforms(study_id):
    discover()
    assert check_study(get_study(study_id)) == []


def test_a_broken_rule_fails_conformance(monkeypatch):
    """Break one study's rule on purpose: a two-way decision and a bar outside the range."""
    discover()
    spec = get_study("emergence-metric")
    assert check_study(spec) == []

    class TwoWay(Above):
        def status(self, metrics):
            return "supported" if metrics[self.metric].ci_low > self.bar else "not supported"

    two_way = spec.rule(spec.make_config())
    broken = type(spec)(**{**spec.__dict__, "rule": lambda cfg: TwoWay(
        two_way.metric, bar=two_way.bar, low=two_way.low, high=two_way.high)})
    monkeypatch.setitem(_REGISTRY, spec.id, broken)
    problems = check_study(broken)
    assert any("built for 'inconclusive' but decides 'not supported'" in p for p in problems)

    unreachable = type(spec)(**{**spec.__dict__, "control": lambda cfg: Above(
        "sharpness_gap", bar=1.0, low=-1.0, high=1.0)})
    problems = check_study(unreachable)
    assert any("control: no input reaches 'supported'" in p for p in problems)


def test_missing_sections_and_comments_are_reported(monkeypatch):
    import sys
    import types

    from assay.study import Control, Result, StudyConfig, study

    module = types.ModuleType("bare_study")
    module.__doc__ = "A bare study.\n\nIt claims something, with no citation and no sections."
    sys.modules["bare_study"] = module

    class Config(StudyConfig):
        n: int = 3
    Config.__module__ = "bare_study"

    def run(cfg: Config, ctx) -> Result:
        return Result(metrics={}, control=Control(metrics={}))
    run.__module__ = "bare_study"
    run.__annotations__["cfg"] = Config

    saved = dict(_REGISTRY)
    try:
        study("bare-study", agenda=["2.1"], rule=lambda cfg: Above("x", bar=0.5))(run)
        problems = check_study(get_study("bare-study"))
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
        sys.modules.pop("bare_study")
    text = "\n".join(problems)
    for section in ("'Claim'", "'Setup:'", "'Verdict:'", "'Negative control:'", "'Power:'"):
        assert section in text
    assert "cannot read the source" in text or "field 'n' has no comment" in text
