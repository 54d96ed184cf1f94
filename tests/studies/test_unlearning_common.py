"""The paired reading the unlearning studies decide on, on hand-made hits."""

import pytest

from assay.methods.stats import paired_rate_difference
from assay.studies._unlearning_common import paired_runs

AGENTS = ["a", "a", "b", "b", "c", "c"]


def test_paired_runs_keep_a_width_when_no_pair_differs():
    # nothing recovered on either model in two runs: every difference is 0 and a bootstrap of
    # them has no width; the floor is Tango's interval of 0 discordant pairs out of 12
    e = paired_runs({0: [0] * 6, 1: [0] * 6}, {0: [0] * 6, 1: [0] * 6}, AGENTS)
    floor = paired_rate_difference(0, 0, 12)
    assert e.value == 0.0 and e.n == 12
    assert (e.ci_low, e.ci_high) == pytest.approx((floor.ci_low, floor.ci_high))
    assert e.ci_high > 0.2 and e.method.endswith("(at least Tango)")


def test_paired_runs_keep_the_bootstrap_when_it_is_wider():
    # the runs disagree (all recovered in one, none in the other): resampling runs gives an
    # interval wider than Tango's, which treats the 12 pairs as independent
    e = paired_runs({0: [1] * 6, 1: [0] * 6}, {0: [0] * 6, 1: [0] * 6}, AGENTS)
    floor = paired_rate_difference(6, 0, 12)
    assert e.value == pytest.approx(0.5)
    assert e.ci_low < floor.ci_low and e.ci_high >= floor.ci_high


def test_paired_runs_leave_graded_readings_alone():
    # log-probabilities are not 0/1: no rate floor applies
    e = paired_runs({0: [0.5] * 6}, {0: [0.5] * 6}, AGENTS)
    assert (e.ci_low, e.ci_high) == (0.0, 0.0)
    assert e.method == "bootstrap-seeds-then-clusters"


def test_deleted_is_reachable_with_one_recovered_fact_at_two_methods_not_four():
    # unlearning-hidden's quick profile: 72 facts about 24 agents, recovery read at the
    # Bonferroni level of its methods; "deleted" needs every upper end below 0.1
    agents = [f"a{i // 3}" for i in range(72)]
    one = {0: [1.0] + [0.0] * 71}
    none = {0: [0.0] * 72}
    two = paired_runs(one, none, agents, level=1 - 0.05 / 2)
    four = paired_runs(one, none, agents, level=1 - 0.05 / 4)
    assert two.ci_high == pytest.approx(0.089, abs=0.001) and two.ci_high < 0.1
    assert four.ci_high == pytest.approx(0.104, abs=0.001) and four.ci_high > 0.1
