"""Declared decision rules: a study states its test once, and the rule both decides and says it.

A rule reads named estimates (a study's metrics, or its control's) and returns a `Verdict`
whose ``status`` and ``test`` sentence come from the same object, so the two cannot drift.
Every rule is three-way:

- supported when the interval clears the bar on the claim's side,
- not supported when it clears the bar on the other side,
- inconclusive when it straddles the bar (or a value is missing or NaN).

Leaves: `Above` (the claim says a quantity exceeds a bar), `Below` (falls under it) and
`Within` (lies within a margin of a centre: "no effect"). Combinations: `AllOf` (a claim in
several parts), `AnyOf` (one of several ways suffices: correct the intervals for picking the
best before they reach the rule), `Given` (a precondition without which the organism cannot
show the phenomenon: unmet, the verdict is inconclusive and says why).

Each rule also builds synthetic inputs meant to reach each status (`cases`), which the
conformance test feeds back to it: a rule that cannot reach a status (a bar outside the
metric's range, a decision written two-way) fails there, not in a reader's head.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from assay.errors import AssayError
from assay.methods.stats import Estimate
from assay.study.base import Verdict

__all__ = ["STATUSES", "AllOf", "Above", "AnyOf", "Below", "Given", "Rule", "Status", "Within",
           "reachable"]

Status = Literal["supported", "not supported", "inconclusive"]
STATUSES: tuple[Status, ...] = ("supported", "not supported", "inconclusive")
Metrics = Mapping[str, Estimate]
Cases = dict[str, list[dict[str, Estimate]]]


class Rule(ABC):
    """A three-way decision over named estimates; see the module docstring."""

    says: Mapping[str, str]  # status -> what that outcome means for the claim (optional)

    @abstractmethod
    def status(self, metrics: Metrics) -> Status:
        """The status these estimates give."""

    @abstractmethod
    def test(self) -> str:
        """The sentence that states the test, e.g. "supported if the 95% interval of ..."."""

    @abstractmethod
    def describe(self, metrics: Metrics) -> str:
        """The measured numbers against the bar, e.g. "ASR 0.62 [0.51, 0.72] lies above 0.5"."""

    @abstractmethod
    def reads(self) -> tuple[str, ...]:
        """The metric names this rule reads."""

    @abstractmethod
    def cases(self) -> Cases:
        """Synthetic metrics built to reach each status (status -> list of inputs)."""

    def decide(self, metrics: Metrics) -> Verdict:
        """The verdict on ``metrics``: status, the test sentence and a statement with numbers."""
        missing = [m for m in self.reads() if m not in metrics]
        if missing:
            have = ", ".join(sorted(metrics)) or "(none)"
            raise AssayError(f"the decision rule reads {', '.join(missing)}, which the study did "
                             f"not report: report it in the metrics (reported: {have})")
        status = self.status(metrics)
        statement = self.describe(metrics)
        if self.says.get(status):
            statement += f": {self.says[status]}"
        return Verdict(status=status, test=self.test(), statement=statement + ".")


# ---------------------------------------------------------------- leaves


def _num(x: float) -> str:
    return f"{x:.3g}"


def _interval(e: Estimate) -> str:
    return f"{_num(e.value)} [{_num(e.ci_low)}, {_num(e.ci_high)}]"


def _measured(e: Estimate) -> bool:
    return not any(math.isnan(v) for v in (e.value, e.ci_low, e.ci_high))


def _synthetic(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, ci_low=low, ci_high=high, n=100, method="synthetic")


@dataclass(frozen=True)
class _Leaf(Rule):
    metric: str                      # the name of the estimate in the metrics
    what: str = ""                   # the estimate in words, for the sentences (default: name)
    low: float = -math.inf           # the smallest value the metric can take (0 for rates)
    high: float = math.inf           # the largest (1 for rates)
    says: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.low >= self.high:
            raise AssayError(f"rule on {self.metric!r}: its range [{self.low}, {self.high}] is "
                             "empty; give low < high")

    @property
    def name(self) -> str:
        return self.what or self.metric

    def reads(self) -> tuple[str, ...]:
        return (self.metric,)

    def _step(self, bar: float) -> float:
        if math.isfinite(self.low) and math.isfinite(self.high):
            return (self.high - self.low) / 100
        return max(abs(bar), 1.0) / 20

    def _around(self, bar: float) -> dict[str, list[float] | None]:
        """Synthetic intervals entirely above, entirely below, and across ``bar``, kept inside
        the metric's range (None where the range leaves no room)."""
        step = self._step(bar)
        up, down = self.high - bar, bar - self.low
        return {
            "above": [bar + min(step, up / 3), bar + min(2 * step, 2 * up / 3)] if up > 0 else None,
            "below": [bar - min(2 * step, 2 * down / 3), bar - min(step, down / 3)]
            if down > 0 else None,
            "across": [bar - min(step, down / 2), bar + min(step, up / 2)]
            if up > 0 and down > 0 else None,
        }


_OPPOSITE = {"above": "below", "below": "above"}


@dataclass(frozen=True)
class _Bar(_Leaf):
    """A one-sided claim against ``bar``; a subclass names the side (``claim``) that supports
    it, and the other side refutes it."""

    bar: float = 0.0
    claim: ClassVar[Literal["above", "below"]]

    def _side(self, e: Estimate) -> str:
        """Where the interval lies: above, below or across the bar."""
        if e.ci_low > self.bar:
            return "above"
        if e.ci_high < self.bar:
            return "below"
        return "across"

    def status(self, metrics: Metrics) -> Status:
        e = metrics[self.metric]
        if not _measured(e):
            return "inconclusive"
        return {self.claim: "supported", _OPPOSITE[self.claim]: "not supported"}.get(
            self._side(e), "inconclusive")

    def test(self) -> str:
        return (f"supported if the interval of {self.name} lies {self.claim} {_num(self.bar)}, "
                f"not supported if it lies {_OPPOSITE[self.claim]}, inconclusive if it "
                f"contains {_num(self.bar)}")

    def describe(self, metrics: Metrics) -> str:
        e = metrics[self.metric]
        where = self._side(e) if _measured(e) else "across"
        return f"{self.name} {_interval(e)} lies {where} {_num(self.bar)}"

    def cases(self) -> Cases:
        around = self._around(self.bar)
        found = {"supported": around[self.claim],
                 "not supported": around[_OPPOSITE[self.claim]],
                 "inconclusive": around["across"]}
        return {s: [{self.metric: _synthetic(*v)}] for s, v in found.items() if v is not None}


@dataclass(frozen=True)
class Above(_Bar):
    """The claim: ``metric`` exceeds ``bar``. Supported when the interval lies above it."""

    claim: ClassVar[Literal["above", "below"]] = "above"


@dataclass(frozen=True)
class AboveIfShown(Above):
    """One way of several (a part of `AnyOf`) measured on too few items to show that it falls
    short: above ``bar`` it supports the claim; anywhere else it reads "not shown" and counts
    as not supported, so an interval that could never lie below the bar does not hold the
    verdict at inconclusive for ever. Use it only where that is so, and say why (``why``)."""

    why: str = "too few items to show it falls short"

    def status(self, metrics: Metrics) -> Status:
        return "supported" if super().status(metrics) == "supported" else "not supported"

    def test(self) -> str:
        return (f"supported if the interval of {self.name} lies above {_num(self.bar)}; "
                f"otherwise not shown, and it does not count for the claim ({self.why})")

    def describe(self, metrics: Metrics) -> str:
        if super().status(metrics) == "supported":
            return super().describe(metrics)
        return (f"{self.name} {_interval(metrics[self.metric])} does not clear "
                f"{_num(self.bar)}: not shown ({self.why})")

    def cases(self) -> Cases:
        around = self._around(self.bar)
        return {"supported": [{self.metric: _synthetic(*around["above"])}],
                "not supported": [{self.metric: _synthetic(*v)}
                                  for v in (around["across"], around["below"]) if v is not None]}


@dataclass(frozen=True)
class Below(_Bar):
    """The claim: ``metric`` falls under ``bar``. Supported when the interval lies below it."""

    claim: ClassVar[Literal["above", "below"]] = "below"


@dataclass(frozen=True)
class Within(_Leaf):
    """The claim: ``metric`` lies within ``margin`` of ``center`` (an effect that is absent or
    negligible). Supported when the whole interval lies inside the band, not supported when it
    lies wholly outside, inconclusive when it crosses an edge."""

    margin: float = 0.0
    center: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.margin > 0:
            raise AssayError(f"rule on {self.metric!r}: Within needs a margin > 0, got {self.margin}")

    def status(self, metrics: Metrics) -> Status:
        e = metrics[self.metric]
        lo, hi = self.center - self.margin, self.center + self.margin
        if not _measured(e):
            return "inconclusive"
        if lo < e.ci_low and e.ci_high < hi:
            return "supported"
        if e.ci_low > hi or e.ci_high < lo:
            return "not supported"
        return "inconclusive"

    def test(self) -> str:
        band = f"{_num(self.center)} +/- {_num(self.margin)}"
        return (f"supported if the interval of {self.name} lies inside {band}, not supported if "
                "it lies wholly outside, inconclusive if it crosses an edge")

    def describe(self, metrics: Metrics) -> str:
        e = metrics[self.metric]
        where = {"supported": "inside", "not supported": "outside",
                 "inconclusive": "across an edge of"}[self.status(metrics)]
        return f"{self.name} {_interval(e)} lies {where} {_num(self.center)} +/- {_num(self.margin)}"

    def cases(self) -> Cases:
        lo, hi = self.center - self.margin, self.center + self.margin
        found: Cases = {}
        inside = [max(lo, self.low), min(hi, self.high)]
        if inside[0] < inside[1]:
            width = inside[1] - inside[0]
            found["supported"] = [{self.metric: _synthetic(inside[0] + width / 3,
                                                           inside[1] - width / 3)}]
        for edge in (hi, lo):
            around = self._around(edge)
            outside = around["above"] if edge == hi else around["below"]
            if outside is not None:
                found.setdefault("not supported", []).append({self.metric: _synthetic(*outside)})
            if around["across"] is not None:
                found.setdefault("inconclusive", []).append(
                    {self.metric: _synthetic(*around["across"])})
        return found


# ---------------------------------------------------------------- combinations


def _merge(*parts: Mapping[str, Estimate]) -> dict[str, Estimate] | None:
    """One metrics dict from several; None when two parts need different values of a name."""
    merged: dict[str, Estimate] = {}
    for part in parts:
        for name, e in part.items():
            if name in merged and merged[name] != e:
                return None
            merged[name] = e
    return merged


def _first(cases: Cases, status: str) -> dict[str, Estimate] | None:
    found = cases.get(status)
    return found[0] if found else None


def _combine(rules: Sequence[Rule], one: str, rest: str, status: str, out: Cases) -> None:
    """Add to ``out[status]`` one input per rule i: rule i reaches ``one``, the others ``rest``."""
    cases = [r.cases() for r in rules]
    for i in range(len(rules)):
        parts = [_first(c, one if j == i else rest) for j, c in enumerate(cases)]
        merged = None if any(p is None for p in parts) else _merge(*parts)
        if merged is not None:
            out.setdefault(status, []).append(merged)


@dataclass(frozen=True)
class _Several(Rule):
    rules: tuple[Rule, ...]
    says: Mapping[str, str] = field(default_factory=dict)

    def __init__(self, *rules: Rule, says: Mapping[str, str] | None = None) -> None:
        if not rules or not all(isinstance(r, Rule) for r in rules):
            raise AssayError(f"{type(self).__name__} takes one or more rules")
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "says", dict(says or {}))

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for r in self.rules for m in r.reads()))

    def _labels(self, prefix: str, depth: int) -> list[str]:
        """Each part's label: (1), (2) at the top, (1a), (1b) inside part 1, (1a1) below."""
        return [prefix + (str(i) if depth % 2 == 0 else chr(96 + i))
                for i in range(1, len(self.rules) + 1)]

    def _parts(self, prefix: str = "", depth: int = 0) -> str:
        return "; ".join(
            f"({label}) {r.test(label, depth + 1) if isinstance(r, _Several) else r.test()}"
            for label, r in zip(self._labels(prefix, depth), self.rules))

    def describe(self, metrics: Metrics, prefix: str = "", depth: int = 0) -> str:
        """Each part's reading, labelled; a part that has parts of its own lists them in
        its place with labels under its own, so no two readings share a label."""
        return "; ".join(
            r.describe(metrics, label, depth + 1) if isinstance(r, _Several)
            else f"({label}) {r.describe(metrics)}"
            for label, r in zip(self._labels(prefix, depth), self.rules))


class AllOf(_Several):
    """A claim in several parts: supported when every part is, not supported when any part is
    not, inconclusive otherwise."""

    def status(self, metrics: Metrics) -> Status:
        found = [r.status(metrics) for r in self.rules]
        if all(s == "supported" for s in found):
            return "supported"
        if "not supported" in found:
            return "not supported"
        return "inconclusive"

    def test(self, prefix: str = "", depth: int = 0) -> str:
        return ("supported if every part is supported, not supported if any part is not, "
                f"inconclusive otherwise: {self._parts(prefix, depth)}")

    def cases(self) -> Cases:
        out: Cases = {}
        _combine(self.rules, "supported", "supported", "supported", out)
        _combine(self.rules, "not supported", "supported", "not supported", out)
        _combine(self.rules, "inconclusive", "supported", "inconclusive", out)
        return out


class AnyOf(_Several):
    """One of several ways suffices: supported when any part is, not supported when every part
    is not, inconclusive otherwise. Correct the parts' intervals for the number of ways tried."""

    def status(self, metrics: Metrics) -> Status:
        found = [r.status(metrics) for r in self.rules]
        if "supported" in found:
            return "supported"
        if all(s == "not supported" for s in found):
            return "not supported"
        return "inconclusive"

    def test(self, prefix: str = "", depth: int = 0) -> str:
        return ("supported if any part is supported, not supported if every part is not, "
                f"inconclusive otherwise: {self._parts(prefix, depth)}")

    def cases(self) -> Cases:
        out: Cases = {}
        _combine(self.rules, "supported", "not supported", "supported", out)
        _combine(self.rules, "not supported", "not supported", "not supported", out)
        _combine(self.rules, "inconclusive", "not supported", "inconclusive", out)
        return out


@dataclass(frozen=True)
class Given(Rule):
    """``rule``, read only where ``requires`` is supported; otherwise inconclusive, because the
    model cannot show the phenomenon (``why`` says what is missing)."""

    requires: Rule
    rule: Rule
    why: str  # what an unmet precondition means, e.g. "the model does not read clean documents"
    says: Mapping[str, str] = field(default_factory=dict)

    def status(self, metrics: Metrics) -> Status:
        if self.requires.status(metrics) != "supported":
            return "inconclusive"
        return self.rule.status(metrics)

    def test(self) -> str:
        return (f"first, {self.requires.test()}; unless that is supported the verdict is "
                f"inconclusive ({self.why}); then, {self.rule.test()}")

    def describe(self, metrics: Metrics) -> str:
        if self.requires.status(metrics) != "supported":
            return f"cannot test the claim here, {self.why}: {self.requires.describe(metrics)}"
        # numbered parts restart in each half, so the halves are named as the test names them
        return f"first, {self.requires.describe(metrics)}; then, {self.rule.describe(metrics)}"

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.requires.reads() + self.rule.reads()))

    def decide(self, metrics: Metrics) -> Verdict:
        """As `Rule.decide`; where the precondition holds, the inner rule's own words for
        its outcome are kept unless this rule says something for that status."""
        verdict = super().decide(metrics)
        tail = self.rule.says.get(verdict.status)
        if self.requires.status(metrics) == "supported" and tail and not self.says.get(
                verdict.status):
            verdict = verdict.model_copy(
                update={"statement": verdict.statement[:-1] + f": {tail}."})
        return verdict

    def cases(self) -> Cases:
        need, inner = self.requires.cases(), self.rule.cases()
        met = _first(need, "supported")
        out: Cases = {}
        for status in STATUSES:
            for case in inner.get(status, []) if met is not None else []:
                merged = _merge(met, case)
                if merged is not None:
                    out.setdefault(status, []).append(merged)
        unmet, claim = _first(need, "not supported"), _first(inner, "supported")
        if unmet is not None and claim is not None and (merged := _merge(unmet, claim)):
            out.setdefault("inconclusive", []).append(merged)
        return out


def reachable(rule: Rule) -> dict[str, list[str]]:
    """Status -> problems found when ``rule`` is fed its own synthetic cases: a status with no
    case, or a case that decides to another status. Empty lists everywhere for a sound rule."""
    problems: dict[str, list[str]] = {s: [] for s in STATUSES}
    cases = rule.cases()
    for status in STATUSES:
        if not cases.get(status):
            problems[status].append(f"no input reaches {status!r} (test: {rule.test()})")
        for case in cases.get(status, []):
            got = rule.decide(case).status
            if got != status:
                shown = ", ".join(f"{k}={_interval(v)}" for k, v in case.items())
                problems[status].append(f"{shown} was built for {status!r} but decides {got!r}")
    return problems
