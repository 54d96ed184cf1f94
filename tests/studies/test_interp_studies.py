"""The 3.4 interpretability studies on xs: real runs through the runner, measured effects,
and controls that measure what they should."""

import pytest

from assay.studies._interp_common import fictional_people


def test_fictional_people_share_no_word_with_the_world(world_xs):
    people = fictional_people(world_xs, 30, seed=0)
    taken = {w.lower() for name in world_xs.entities for w in name.split()}
    assert len(set(people)) == 30
    assert not any(w.lower() in taken for p in people for w in p.split())
    assert fictional_people(world_xs, 30, seed=0) == people  # seeded


@pytest.mark.slow
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
    # measured on xs: advantage +0.012 [-0.013, +0.040]; the interval holds zero, which the
    # three-way rule reads as inconclusive (not as "not supported")
    adv = r.metrics["selectivity_advantage"]
    assert adv.ci_low < 0 < adv.ci_high and abs(adv.value) < 0.05
    assert r.verdict.status == "inconclusive"
    # an attribute the organism never saw: selectivity vanishes for both probes
    for kind in ("linear", "mlp"):
        sel = r.control.metrics[f"selectivity@{kind}"]
        assert sel.ci_low < 0.02 and sel.ci_high > -0.02 and abs(sel.value) < 0.05
    ctrl = r.control.metrics["selectivity_advantage"]
    assert ctrl.ci_low < 0 < ctrl.ci_high
    assert r.control.verdict.status != "supported" and r.status == "inconclusive"


@pytest.mark.slow
def test_probe_vs_causal_edits_move_answers_and_random_edits_do_not(run_xs):
    record = run_xs("probe-vs-causal", {"attributes": '["birth_city"]', "n_boot": "200"})
    r = record.result
    rows = r.tables["sites"]
    assert r.metrics["clean_accuracy@birth_city"].value > 0.8  # xs knows the cities it is asked
    last = [row for row in rows if row["position"] == "last token"]
    subject = [row for row in rows if row["position"] == "last subject"]
    # measured on xs: edits along the probe move 0.72 of answers at the last token of L1
    assert max(row["causal effect"] for row in last) > 0.2
    assert max(row["decoding accuracy"] for row in last) > 0.9
    # the subject's last token decodes the city, yet editing it there moves no answer
    assert max(row["decoding accuracy"] for row in subject) > 0.5
    assert max(row["causal effect"] for row in subject) < 0.05
    # the precondition holds (edits move answers); then the gap decides. On one draw of xs
    # the site that decodes best is also where edits act most (gap 0 [0, 0], not supported);
    # on another (another machine) it falls short by 0.16 [0.03, 0.28] (inconclusive against
    # the 0.1 margin): the verdict must be what the gap's interval says
    assert r.metrics["max_effect"].ci_low > 0.1
    best = [row for row in rows if row["best decoding"]]
    assert len(best) == 1 and best[0]["decoding accuracy"] == 1.0
    most = max(row["causal effect"] for row in rows)
    assert r.metrics["gap"].value == pytest.approx(most - best[0]["causal effect"], abs=1e-3)
    gap = r.metrics["gap"]
    assert gap.ci_high < 0.35
    assert r.verdict.status == ("not supported" if gap.ci_high < 0.1 else
                                "supported" if gap.ci_low > 0.1 else "inconclusive")
    # the control: random edits of the same length move nothing anywhere, so its
    # precondition fails and it cannot read supported
    assert max(row["random direction"] for row in rows) < 0.05
    assert r.control.metrics["max_effect"].ci_high < 0.05
    assert r.control.verdict.status == "inconclusive" and r.status == r.verdict.status


@pytest.mark.slow
def test_causal_tracing_noise_hurts_and_invented_people_restore_nothing(run_xs):
    record = run_xs("causal-tracing", {"n_facts": "12", "samples": "2", "n_control": "8",
                                       "n_boot": "200"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    assert m["p_corrupt"].ci_high < m["p_clean"].ci_low
    assert m["damage"].ci_low > 0.1  # the precondition: the noise removes recall
    last_block = [row for row in r.tables["indirect_effect"]
                  if row["site"] == "block output" and row["layer"] == 1][0]
    assert last_block["last token"] == pytest.approx(1.0, abs=1e-6)  # restores the whole answer
    # measured on xs (two blocks): the last token's MLP restores 0.82 of the damage, the
    # subject's 0.005, so the claim is not supported on xs
    assert m["mlp_subject_minus_last"].ci_high < -0.5
    assert m["mlp_subject_early"].ci_high < 0.1
    assert r.verdict.status == "not supported"
    # the control asks about people xs never saw: it does not give their (random) answers,
    # the noise does not lower them, and nothing at the subject restores them
    assert c["p_clean"].value < 0.5 and c["p_clean"].ci_high < m["p_clean"].ci_low
    assert abs(c["damage"].value) < 0.2
    assert c["mlp_subject_early"].ci_high < 0.05
    # control shares are in the learned facts' units: restoring the last block at the last
    # token brings back exactly the invented people's own (tiny) damage
    control_last = [row for row in r.tables["control_indirect_effect"]
                    if row["site"] == "block output" and row["layer"] == 1][0]
    assert control_last["last token"] == pytest.approx(c["damage"].value / m["damage"].value,
                                                       abs=1e-3)
    assert r.control.verdict.status == "not supported" and r.status == "not supported"


@pytest.mark.slow
def test_refusal_direction_random_direction_does_nothing(run_xs):
    # a change of 0.1 counts on xs: with 52 hazard requests, a random direction that changes
    # nothing has a Tango upper end of about 0.09 at the Bonferroni level, so the control can
    # read "not supported" only above that (on s, 156 requests: 0.03, under the default 0.05)
    record = run_xs("refusal-direction", {"n_benign": "16", "min_change": "0.1"})
    r = record.result
    m, c = r.metrics, r.control.metrics
    assert m["refusal@hazard"].value == 1.0 and m["refusal@benign"].value == 0.0
    # measured on xs, held-out wordings: the fitted direction induces refusals of benign
    # requests (0.31) and cuts refusals of hazard ones (1.0 -> 0.02); xs never names the
    # hazard object then, which is reported and not judged (it was never taught to answer)
    assert m["refusal_gain@benign"].ci_low > 0.05
    assert m["refusal@benign@added"].ci_low > m["refusal@benign"].ci_high
    assert m["refusal@hazard@ablated"].ci_high < 0.5
    assert m["refusal_drop@hazard"].value == pytest.approx(
        m["refusal@hazard"].value - m["refusal@hazard@ablated"].value)
    assert m["answer_gain@hazard"].value < 0.05
    assert any("Reported, not judged" in note for note in r.notes)
    assert r.verdict.status == "supported"
    from assay.studies.refusal_direction import Config, rule
    assert "answer_gain@hazard" not in rule(Config()).reads()
    # the random direction of the same norm does neither, read at the Bonferroni-widened
    # level for the two parts
    assert c["refusal@hazard@ablated"].value == 1.0
    assert c["refusal@benign@added"].value == 0.0
    for name in ("refusal_drop@hazard", "refusal_gain@benign"):
        assert c[name].value == 0.0 and c[name].level == pytest.approx(1 - 0.05 / 2)
    assert r.control.verdict.status == "not supported" and r.status == "supported"
    assert len(r.tables["examples"]) > 0
