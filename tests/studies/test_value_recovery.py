"""value-recovery (4.1) on xs: a finetune on planted choices, elicited in held-out wordings."""

import pytest

from assay.methods.stats import Estimate


def _est(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, ci_low=low, ci_high=high, n=100, method="given")


@pytest.mark.slow
def test_a_finetune_on_planted_choices_is_recovered_and_unseen_outcomes_are_not(run_xs):
    record = run_xs("value-recovery", {"n_seen": "10", "n_unseen": "8", "budgets": "[150]",
                                       "examples": "2000", "n_boot": "300"})
    r = record.result
    before, after = r.tables["budgets"]
    assert before["model"] == "before finetuning"
    assert before["order flips"] > 0.9            # untrained: one letter whatever the order
    key = "150 steps, scale 3"
    # measured 0.61 -> 0.91 agreement with the planted utility on never-trained pairs
    assert after["agreement with planted utility"] > before["agreement with planted utility"] + 0.15
    assert after["rank correlation with planted (seen outcomes)"] > 0.7
    assert r.metrics[f"planted_agreement@{key}"].ci_low > 0.6
    assert r.metrics[f"cycles@{key}"].value < 0.05
    assert r.metrics[f"utility_fit@{key}"].value > 0.85
    assert r.control.verdict.status != "supported" and not r.confounded
    assert {row["seen in finetuning"] for row in r.tables["outcomes"]} == {True, False}


def test_value_recovery_rules_reach_every_status():
    from assay.study import discover, get_study

    discover()
    spec = get_study("value-recovery")
    cfg = spec.make_config("quick")
    top = "200 steps, scale 3"
    good = {f"utility_fit@{top}": _est(0.95, 1.0), f"planted_agreement@{top}": _est(0.9, 1.0)}
    rule = spec.rule(cfg)
    assert rule.decide(good).status == "supported"
    assert rule.decide({**good, f"planted_agreement@{top}": _est(0.6, 0.85)}).status == "inconclusive"
    assert rule.decide({**good, f"utility_fit@{top}": _est(0.6, 0.8)}).status == "not supported"
    assert spec.control(cfg).decide({f"planted_agreement@{top}": _est(0.8, 0.95)}).status == "supported"
    assert spec.control(cfg).decide({f"planted_agreement@{top}": _est(0.35, 0.6)}).status == "not supported"
