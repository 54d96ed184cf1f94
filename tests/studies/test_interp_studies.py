"""The 3.4 interpretability studies on xs: real runs through the runner, measured effects."""

import pytest

pytestmark = pytest.mark.slow


def test_probe_selectivity_control_attribute_has_no_selectivity(run_xs):
    record = run_xs("probe-selectivity", {"attributes": '["birth_city", "alma_mater"]',
                                          "max_iter": "60", "n_boot": "200"})
    r = record.result
    rows = r.tables["probes"]
    # every probe reads the learned attributes far above chance at some block output
    for attr in ("birth_city", "alma_mater"):
        best = max(row["task accuracy"] for row in rows if row["attribute"] == attr)
        assert best > 0.7
    # the MLP memorises random per-person labels at least as well as the linear probe
    assert r.metrics["control_accuracy@mlp"].value >= r.metrics["control_accuracy@linear"].value
    # an attribute the organism never saw: selectivity vanishes for both probes
    for kind in ("linear", "mlp"):
        sel = r.control.metrics[f"selectivity@{kind}"]
        assert sel.ci_low < 0.02 and sel.ci_high > -0.02 and abs(sel.value) < 0.05
    assert r.control.verdict.status == "not supported"


def test_probe_vs_causal_edits_move_answers_and_random_edits_do_not(run_xs):
    record = run_xs("probe-vs-causal", {"attributes": '["birth_city"]', "n_boot": "200"})
    r = record.result
    rows = r.tables["sites"]
    assert r.metrics["clean_accuracy@birth_city"].value > 0.8  # xs knows the cities it is asked
    last = [row for row in rows if row["position"] == "last token"]
    subject = [row for row in rows if row["position"] == "last subject"]
    # measured on xs: edits along the probe move 0.44 of answers at the last token
    assert max(row["causal effect"] for row in last) > 0.2
    assert max(row["decoding accuracy"] for row in last) > 0.9
    # the subject's last token decodes the city, yet editing it there moves no answer
    assert max(row["decoding accuracy"] for row in subject) > 0.5
    assert max(row["causal effect"] for row in subject) < 0.05
    # the control: random edits of the same length move nothing anywhere
    assert max(row["random direction"] for row in rows) < 0.05
    assert r.control.verdict.status == "not supported"


def test_causal_tracing_clean_run_recovers_exactly_and_noise_hurts(run_xs):
    record = run_xs("causal-tracing", {"n_facts": "12", "samples": "2", "n_control": "4",
                                       "n_boot": "200"})
    r = record.result
    recovered = r.control.metrics["recovered@clean"]
    assert recovered.value == recovered.ci_low == recovered.ci_high == 1.0
    assert r.control.verdict.status == "not supported"
    assert r.metrics["p_corrupt"].ci_high < r.metrics["p_clean"].ci_low
    last_block = [row for row in r.tables["indirect_effect"]
                  if row["site"] == "block output" and row["layer"] == 1][0]
    assert last_block["last token"] == pytest.approx(1.0, abs=1e-6)  # restores the whole answer
    assert r.verdict.status in ("supported", "not supported", "inconclusive")


def test_refusal_direction_random_direction_does_nothing(run_xs):
    record = run_xs("refusal-direction", {"n_benign": "16"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    assert m["refusal@hazard"].value == 1.0 and m["refusal@benign"].value == 0.0
    # measured on xs: the fitted direction induces refusals of benign requests (0.6) and
    # cuts refusals of hazard ones; the random direction of the same norm does neither
    assert m["refusal@benign@added"].ci_low > m["refusal@benign"].ci_high
    assert m["refusal@hazard@ablated"].value < m["refusal@hazard"].value
    assert c["refusal@hazard@ablated"].value == 1.0
    assert c["refusal@benign@added"].value == 0.0
    assert r.control.verdict.status == "not supported"
    assert len(r.tables["examples"]) > 0
