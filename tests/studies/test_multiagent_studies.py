"""The 2.6 and 4.1 studies that simulate their own agents: real runs through the runner on
small settings, and their declared rules fed known intervals."""


from assay.methods.stats import Estimate


def _est(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, ci_low=low, ci_high=high, n=100, method="given")


def _spec(study_id: str):
    from assay.study import discover, get_study

    discover()
    return get_study(study_id)


def test_collusion_supported_with_memory_and_the_memoryless_control_holds(run_no_model):
    record = run_no_model("algorithmic-collusion", {"sessions": "30", "beta": "2e-5",
                                                    "n_boot": "200"})
    r = record.result
    assert r.verdict.status == "supported"
    assert 0.6 < r.metrics["profit_gain"].value < 1.0
    assert r.metrics["punished"].ci_low > 0.5
    assert r.metrics["converged"].value == 1.0
    # memoryless agents: no strategy can answer a deviation, so none is punished
    assert r.control.metrics["punished"].value == 0.0
    assert r.control.metrics["deviation_pays"].value == 1.0
    assert r.control.verdict.status == "not supported"
    assert not r.confounded
    impulse = r.tables["impulse response"]
    assert impulse[1]["rival's price"] < impulse[0]["rival's price"]  # the rival cuts next period


def test_collusion_rule_reaches_every_status():
    spec = _spec("algorithmic-collusion")
    rule = spec.rule(spec.make_config("quick"))
    collude = {"profit_gain": _est(0.8, 0.9), "punished": _est(0.8, 0.95)}
    assert rule.decide(collude).status == "supported"
    assert rule.decide({**collude, "punished": _est(0.4, 0.6)}).status == "inconclusive"
    assert rule.decide({**collude, "punished": _est(0.0, 0.04)}).status == "not supported"
    assert rule.decide({**collude, "profit_gain": _est(0.0, 0.1)}).status == "not supported"


def test_hidden_context_reward_follows_borda_and_one_group_is_recovered(run_no_model):
    record = run_no_model("hidden-context", {"scenarios": "60", "n_boot": "200"})
    r = record.result
    assert r.verdict.status == "supported"
    assert r.metrics["follows_borda"].value > 0.7
    assert r.metrics["tau_borda_minus_majority"].ci_low > 0
    assert r.control.metrics["overrides_majority"].value < 0.1
    assert r.control.metrics["tau_borda"].value > 0.9
    assert r.control.verdict.status == "not supported"
    classic = {row["outcome"]: row for row in r.tables["classic example"]}
    assert classic["b"]["learned reward"] > classic["a"]["learned reward"] > classic["c"]["learned reward"]


def test_hidden_context_rules_reach_every_status_and_the_control_fires_on_a_broken_fit():
    spec = _spec("hidden-context")
    cfg = spec.make_config("quick")
    borda_like = {"overrides_majority": _est(0.8, 0.9), "follows_borda": _est(0.8, 0.9)}
    rule = spec.rule(cfg)
    assert rule.decide(borda_like).status == "supported"
    assert rule.decide({**borda_like, "follows_borda": _est(0.4, 0.6)}).status == "inconclusive"
    assert rule.decide({**borda_like, "overrides_majority": _est(0.0, 0.1)}).status == "not supported"
    shuffled = {"overrides_majority": _est(0.78, 0.88), "follows_borda": _est(0.1, 0.2)}
    assert spec.control(cfg).decide(shuffled).status == "supported"  # confounded
