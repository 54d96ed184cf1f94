"""Declared decision rules: three-way on synthetic estimates, and their own sentences."""

import math

import pytest

from assay.errors import AssayError
from assay.methods.stats import Estimate, wilson
from assay.study import STATUSES, Above, AllOf, AnyOf, Below, Given, Within, reachable


def est(low, high, value=None):
    return Estimate(value=(low + high) / 2 if value is None else value, ci_low=low, ci_high=high,
                    n=50, method="test")


def statuses(rule, name, intervals):
    return [rule.decide({name: est(*i)}).status for i in intervals]


def test_above_is_three_way_and_strict_at_the_bar():
    rule = Above("asr", bar=0.5, low=0, high=1)
    got = statuses(rule, "asr", [(0.55, 0.7), (0.2, 0.45), (0.4, 0.6), (0.5, 0.7), (0.3, 0.5)])
    assert got == ["supported", "not supported", "inconclusive", "inconclusive", "inconclusive"]


def test_below_mirrors_above():
    rule = Below("leak", bar=0.1, low=0, high=1)
    got = statuses(rule, "leak", [(0.0, 0.05), (0.2, 0.3), (0.05, 0.15)])
    assert got == ["supported", "not supported", "inconclusive"]


def test_within_is_an_equivalence_test():
    rule = Within("delta", margin=0.05)
    got = statuses(rule, "delta", [(-0.02, 0.03), (0.06, 0.2), (-0.3, -0.1), (0.0, 0.08)])
    assert got == ["supported", "not supported", "not supported", "inconclusive"]


def test_nan_is_inconclusive_and_a_missing_metric_is_an_error():
    rule = Above("x", bar=0.0)
    assert rule.decide({"x": est(math.nan, math.nan, math.nan)}).status == "inconclusive"
    with pytest.raises(AssayError, match="reads x, which the study did not report.*reported: y"):
        rule.decide({"y": est(0, 1)})


def test_the_rule_writes_the_test_and_the_statement():
    rule = Above("gap", bar=0.5, what="compositionality gap",
                 says={"inconclusive": "the data cannot tell"})
    v = rule.decide({"gap": est(0.46, 0.62, 0.54)})
    # the issue's own example: 0.54 [0.46, 0.62] against 0.5 is inconclusive, not "not supported"
    assert v.status == "inconclusive"
    assert v.test == ("supported if the interval of compositionality gap lies above 0.5, not "
                      "supported if it lies below, inconclusive if it contains 0.5")
    assert v.statement == ("compositionality gap 0.54 [0.46, 0.62] lies across 0.5: the data "
                           "cannot tell.")


def test_all_of_any_of_and_given():
    a, b = Above("a", bar=0.5, low=0, high=1), Below("b", bar=0.2, low=0, high=1)
    yes_a, no_a, mid_a = est(0.6, 0.7), est(0.1, 0.3), est(0.4, 0.6)
    yes_b, no_b = est(0.0, 0.1), est(0.3, 0.4)
    both = AllOf(a, b)
    assert both.decide({"a": yes_a, "b": yes_b}).status == "supported"
    assert both.decide({"a": mid_a, "b": no_b}).status == "not supported"
    assert both.decide({"a": mid_a, "b": yes_b}).status == "inconclusive"
    either = AnyOf(a, b)
    assert either.decide({"a": no_a, "b": yes_b}).status == "supported"
    assert either.decide({"a": no_a, "b": no_b}).status == "not supported"
    assert either.decide({"a": mid_a, "b": no_b}).status == "inconclusive"
    gated = Given(Above("clean", bar=0.5, low=0, high=1), a, why="the model cannot read")
    unmet = gated.decide({"clean": wilson(3, 40), "a": yes_a})
    assert unmet.status == "inconclusive"
    assert unmet.statement.startswith("cannot test the claim here, the model cannot read")
    assert gated.decide({"clean": wilson(38, 40), "a": no_a}).status == "not supported"
    assert both.reads() == ("a", "b") and gated.reads() == ("clean", "a")


@pytest.mark.parametrize("rule", [
    Above("x", bar=0.5, low=0, high=1),
    Below("x", bar=0.05, low=0, high=1),
    Above("x", bar=0.0),
    Within("x", margin=0.1, low=-1, high=1),
    AllOf(Above("x", bar=0.5, low=0, high=1), Below("y", bar=0.0)),
    AnyOf(Above("x", bar=0.5, low=0, high=1), Above("y", bar=0.0), Within("z", margin=1.0)),
    Given(Above("c", bar=0.5, low=0, high=1), AllOf(Above("x", bar=0.2), Below("y", bar=3.0)),
          why="no clean reading"),
])
def test_sound_rules_reach_every_status_on_their_own_cases(rule):
    problems = reachable(rule)
    assert problems == {s: [] for s in STATUSES}
    assert all(rule.cases()[s] for s in STATUSES)


def test_a_bar_at_the_edge_of_the_range_cannot_reach_every_status():
    # a rate "above 0" can never be "not supported": the conformance test reports it
    problems = reachable(Above("rate", bar=0.0, low=0.0, high=1.0))
    assert problems["supported"] == []
    assert problems["not supported"] and problems["inconclusive"]


def test_a_two_way_rule_is_caught():
    class TwoWay(Above):  # the old hand-written pattern: "not supported" unless CI clears the bar
        def status(self, metrics):
            return "supported" if metrics[self.metric].ci_low > self.bar else "not supported"

    problems = reachable(TwoWay("x", bar=0.5, low=0, high=1))
    assert problems["inconclusive"] and "decides 'not supported'" in problems["inconclusive"][0]


def test_bad_rules_are_refused():
    with pytest.raises(AssayError, match="range"):
        Above("x", bar=0.5, low=1, high=0)
    with pytest.raises(AssayError, match="margin > 0"):
        Within("x", margin=0)
    with pytest.raises(AssayError, match="one or more rules"):
        AllOf()


def test_given_keeps_the_inner_rules_words():
    inner = Above("a", bar=0.5, low=0, high=1, says={"supported": "the effect is there"})
    gated = Given(Above("c", bar=0.5, low=0, high=1), inner, why="no reading")
    v = gated.decide({"c": est(0.8, 0.9), "a": est(0.6, 0.7)})
    assert v.status == "supported" and v.statement.endswith(": the effect is there.")


def test_parts_inside_parts_get_labels_of_their_own():
    inner = AnyOf(Above("a", bar=0.1, what="A"), Above("b", bar=0.1, what="B"))
    rule = AllOf(inner, AllOf(Below("c", bar=0.5, what="C"), Above("d", bar=0.0, what="D")),
                 Above("e", bar=0.2, what="E"))
    v = rule.decide({"a": est(0.2, 0.3), "b": est(0.0, 0.05), "c": est(0.1, 0.2),
                     "d": est(0.1, 0.2), "e": est(0.1, 0.3)})
    assert v.status == "inconclusive"
    labels = [part.split(")")[0] for part in v.statement.split("(")[1:]]
    assert labels == ["1a", "1b", "2a", "2b", "3"]  # no reading shares a label
    assert "(1) supported if any part is supported" in v.test  # the inner rule's own words
    assert "(1a) supported if the interval of A" in v.test and "(2b) " in v.test
    deeper = AllOf(AllOf(AllOf(Above("a", bar=0.1, what="A"))))
    assert deeper.decide({"a": est(0.2, 0.3)}).statement.startswith("(1a1) A ")
    # a precondition and a claim each number their parts: the halves are named apart
    given = Given(AllOf(Above("a", bar=0.1, what="A"), Above("b", bar=0.1, what="B")),
                  AllOf(Above("c", bar=0.1, what="C"), Above("d", bar=0.1, what="D")), why="w")
    said = given.decide({m: est(0.2, 0.3) for m in "abcd"}).statement
    assert said.startswith("first, (1) A ") and "; then, (1) C " in said
