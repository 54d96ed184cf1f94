"""The 2.1 / 2.3 / 2.4 studies on tiny settings: real runs through the runner."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_icl_regression_tracks_least_squares_and_the_mean_predictor_does_not(run_xs):
    record = run_xs("icl-linear-regression", {"d": "2", "k": "10", "steps": "600",
                                              "d_model": "32", "n_layer": "2", "lr": "0.003",
                                              "n_eval": "300", "n_boot": "200"})
    r = record.result
    assert r.verdict.status == "supported"
    dist = {row["estimator"]: row["mean squared distance to the transformer"]
            for row in r.tables["distances"]}
    assert dist["least squares"] < dist["one GD step"] < dist["mean"]
    errors = r.tables["errors"]
    assert errors[-1]["transformer"] < 0.3 * errors[1]["transformer"]  # learns from examples
    assert errors[-1]["transformer (stress)"] > errors[-1]["transformer"]  # outside its range
    assert r.control.verdict.status == "not supported"


@pytest.fixture
def two_rungs():
    """The ladder cut to its two smallest sizes at its shortest budget (trains in ~1 min)."""
    return {"sizes": "[32, 48]", "steps": "150"}


def test_emergence_metrics_agree_with_a_direct_count(run_xs, two_rungs):
    record = run_xs("emergence-metric", {**two_rungs, "n_sums": "30", "n_boot": "100"})
    r = record.result
    rows = r.tables["sizes"]
    assert [row["run"] for row in rows] == ["ladder-32-150", "ladder-48-150"]
    for row in rows:
        for metric in ("exact match", "per-token probability", "1 - edit distance"):
            assert 0.0 <= row[metric] <= 1.0
    # the per-token probability is the geometric mean of the reference's token probabilities
    from assay.models import load
    from assay.world import World, WorldConfig, dialogues

    lm = load("organism:ladder-32-150")
    sums = dialogues(World(WorldConfig.preset("s")), "add", "test")[:30]
    scored = lm.score([d.prompt for d in sums], [d.assistant for d in sums])
    expected = np.mean([np.exp(np.mean(s.token_logprobs)) for s in scored])
    assert rows[0]["per-token probability"] == pytest.approx(expected, abs=1e-4)


def test_compositionality_gap_counts_only_questions_with_both_hops_known(run_xs, two_rungs):
    record = run_xs("compositionality-gap", {**two_rungs, "n_questions": "40", "n_boot": "100"})
    rows = record.result.tables["sizes"]
    for row in rows:
        # a question counts only when both of its hops are known
        assert 0 <= row["both known"] <= round(40 * min(row["hop 1 known"], row["hop 2 known"]))
        for arm in ("direct", "scratchpad", "wrong first hop"):
            gap = row[f"gap ({arm})"]
            assert gap is None or 0.0 <= gap <= 1.0


def test_induction_heads_form_with_in_context_learning_in_two_blocks_not_one(run_xs):
    record = run_xs("induction-heads", {"steps": "800", "every": "100", "runs": "1",
                                        "n_eval": "32", "n_boot": "100",
                                        "keep_checkpoints": "true"})
    r = record.result
    two, one = r.metrics, r.control.metrics
    assert two["prefix_matching@2-block seed 0"].value > 0.3   # an induction head forms
    assert two["copying@2-block seed 0"].value > 0.5           # and copies what it attends to
    assert two["icl_change@2-block seed 0"].value < -0.5       # context helps, by nats
    assert abs(two["lag@2-block seed 0"].value) < 200          # at the same time
    assert one["prefix_matching@1-block"].value < 0.1          # one block cannot match prefixes
    assert one["icl_change@1-block"].value > -0.3
    assert r.control.verdict.status == "not supported"
    rows = {(row["model"], row["step"]): row for row in r.tables["checkpoints"]}
    assert set(rows) == {(m, s) for m in ("2-block seed 0", "1-block") for s in range(0, 801, 100)}
    assert (rows[("2-block seed 0", 800)]["loss on repeated random text"]
            < rows[("1-block", 800)]["loss on repeated random text"] - 1.0)
    saved = sorted(p.name for p in record.folder.glob("checkpoint-*.safetensors"))
    assert len(saved) == 18 and saved[-1] == "checkpoint-2-block-seed-0-step00800.safetensors"


@pytest.mark.parametrize("sets, message", [({"span": "100"}, "half the context"),
                                           ({"every": "5000"}, "at most steps")])
def test_induction_heads_config_rejects_settings_that_cannot_run(sets, message):
    from assay.errors import AssayError
    from assay.studies.registry import discover, get_study

    discover()
    with pytest.raises(AssayError, match=message):
        get_study("induction-heads").config.make("quick", sets, study="induction-heads")
