"""The 3.3 / 2.2 evaluation studies on xs: real runs through the runner, measured effects."""

import pytest

pytestmark = pytest.mark.slow


def test_contamination_planted_items_score_higher_and_min_k_finds_them(run_xs):
    record = run_xs("contamination", {"n_people": "24", "copies": "[8]", "steps": "60",
                                      "english": "shakespeare-xs", "passages": "40"})
    r = record.result
    m = r.metrics
    # measured on xs: planted items +0.3 or more over the unplanted arm, clean items ~0
    assert m["inflation@half x8/planted"].ci_low > 0.1
    assert m["inflation@half x8/planted"].value > m["inflation@half x8/clean"].value + 0.1
    assert m["auroc@half x8/min_k"].ci_low > 0.8
    assert m["auroc@half x8/min_k_plus_plus"].ci_low > 0.7
    control = r.control.metrics
    assert control["auroc@none/min_k"].ci_low < 0.5 < control["auroc@none/min_k"].ci_high
    assert r.control.verdict.status == "not supported"
    assert "shakespeare" in r.tables  # the detectors also ran on real English


def test_format_sensitivity_spreads_accuracy_and_its_control_is_exactly_flat(run_xs):
    record = run_xs("format-sensitivity", {"n_people": "12", "n_formats": "8",
                                           "tune_people": "16", "tune_steps": "20"})
    r = record.result
    assert r.control.metrics["spread@hidden-option orders"].value == 0.0
    assert r.control.verdict.status == "not supported"
    # xs answers well only in its own chat format: other formats fall towards chance
    assert r.metrics["spread@base"].ci_low > 0.2
    assert len(r.tables["formats"]) == 8


def test_error_bars_clustering_widens_and_random_clusters_do_not(run_xs):
    record = run_xs("error-bars", {"n_people": "24", "tune_people": "16", "subset_people": "8",
                                   "n_subsets": "100"})
    r = record.result
    assert r.metrics["se_ratio@person"].value > 1.2
    ratio = r.control.metrics["se_ratio@random clusters"]
    assert ratio.ci_low < 1.0 < ratio.ci_high + 0.15


def test_sandbagger_hides_behind_the_cue_and_noise_is_undone(run_xs):
    record = run_xs("sandbagging-noise", {"train_people": "24", "eval_people": "24",
                                          "evaluate": "trained", "steps": "120", "seeds": "2",
                                          "scales": "[0.0, 0.2, 0.4]"})
    r = record.result
    m = r.metrics
    # the sandbagging itself is learned: behind the cue, the sandbagger falls below honest
    assert (m["noiseless_cued_accuracy@sandbagger"].ci_high
            < m["noiseless_cued_accuracy@honest"].ci_low)
    # every seed starts from the same noiseless weights: the noise is removed after each run
    for row in r.tables["noise"]:
        if row["scale"] == 0.0:
            assert row["min"] == row["max"]
    assert r.control.metrics["detection_rate@honest"].value == 0.0  # noise never lifts it


def test_elicitation_finetune_beats_zero_shot_and_fictional_people_stay_at_chance(run_xs):
    record = run_xs("elicitation-gap", {"eval_people": "12", "shot_people": "4",
                                        "tune_people": "16", "tune_steps": "40"})
    r = record.result
    assert r.metrics["accuracy@scaffold"].value > r.metrics["accuracy@zero-shot"].value
    for name, est in r.control.metrics.items():
        if name.startswith("accuracy@"):
            assert est.ci_low < 0.25 + 0.05 and est.ci_high > 0.25 - 0.05, name


@pytest.mark.parametrize("study,key,value,message", [
    ("contamination", "english", "s", "not an organism trained on a text corpus"),
    ("sandbagging-noise", "evaluate", "everyone", "evaluate"),
])
def test_bad_config_values_are_refused_before_anything_runs(study, key, value, message):
    from assay.errors import AssayError
    from assay.studies.registry import discover, get_study

    discover()
    with pytest.raises(AssayError, match=message):
        get_study(study).make_config("quick", {key: value})
