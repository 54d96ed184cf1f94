"""correlated-failures (2.6): pools of finetunes of one ladder run against runs pretrained
apart, on the ladder's smallest rung; and its rule fed known intervals."""

import numpy as np
import pytest

from assay.methods.stats import Estimate


def _est(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, ci_low=low, ci_high=high, n=100, method="given")


@pytest.mark.slow
def test_pools_on_the_smallest_rung_fail_together_alike(run_no_model):
    record = run_no_model("correlated-failures", {"d_model": "32", "steps": "150",
                                                  "finetune_steps": "30", "n_boot": "300"})
    r = record.result
    rows = r.tables["models"]
    assert [row["pool"] for row in rows] == ["shared"] * 2 + ["separate"] * 2 + ["control"] * 2
    assert [row["pretraining seed"] for row in rows] == [0, 0, 1, 2, 3, 4]
    # every pool fails together beyond independence (shared data makes some questions hard
    # for all); measured 1.38 and 1.40, and a gap of -0.01 [-0.04, 0.01] at this size
    for pool in ("shared", "separate"):
        assert r.metrics[f"homogenisation@{pool}"].ci_low > 1.1
    gap = r.metrics["log_ratio_gap"]
    assert abs(gap.value) < 0.1 and gap.ci_low < gap.value < gap.ci_high
    assert np.isclose(gap.value, np.log(r.metrics["homogenisation@shared"].value)
                      - np.log(r.metrics["homogenisation@separate"].value))
    assert r.control.verdict.status != "supported"


def test_correlated_failures_rule_reaches_every_status_and_refuses_a_missing_rung():
    from assay.study import discover, get_study

    discover()
    spec = get_study("correlated-failures")
    cfg = spec.make_config("quick")
    rule = spec.rule(cfg)
    assert rule.decide({"log_ratio_gap": _est(0.2, 0.5)}).status == "supported"
    assert rule.decide({"log_ratio_gap": _est(0.0, 0.2)}).status == "inconclusive"
    assert rule.decide({"log_ratio_gap": _est(-0.1, 0.05)}).status == "not supported"
    assert len(spec.organisms(cfg, None)) == 5  # the rung and its replicates ~1..~4
    assert spec.organisms(spec.make_config("full"), None)[-1].endswith("~6")


def test_a_size_the_ladder_lacks_is_refused_before_anything_runs(tmp_path):
    from assay.errors import AssayError
    from assay.runner import plan

    with pytest.raises(AssayError, match="the ladder has sizes"):
        plan(["correlated-failures"], model="organism:s", seeds=[0], sets={"d_model": "40"})
