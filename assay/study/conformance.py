"""`check_study`: what every registered study must satisfy, checked without running it.

In the spirit of scikit-learn's ``check_estimator``: the tests run it over every registered
study, and a study of your own can run it before its first real run.

- The module docstring has the sections a reader needs: a title, ``Claim`` with a citation
  (authors and year), ``Setup:``, ``Verdict:``, ``Negative control:`` and ``Power:`` (the
  smallest effect the quick profile can detect with its n).
- Every field of the Config has a comment saying what it is; both profiles build.
- The declared rule and control rule, for the quick and the full config, reach each of
  supported, not supported and inconclusive on synthetic inputs built for each (see
  `assay.study.rules.reachable`), and a control input built to fire (a broken pipeline)
  makes the unit "confounded".
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap

from assay.study.base import PROFILES, Control, Result
from assay.study.registry import StudySpec
from assay.study.rules import STATUSES, Rule, reachable

__all__ = ["SECTIONS", "check_study", "config_comments"]

SECTIONS = ("Claim", "Setup:", "Verdict:", "Negative control:", "Power:")
_CITATION = re.compile(r"\b(19|20)\d\d\b")


def check_study(spec: StudySpec) -> list[str]:
    """Every problem found in study ``spec``, one line each; empty when it conforms."""
    return _docstring(spec) + _config(spec) + _rules(spec)


def _docstring(spec: StudySpec) -> list[str]:
    doc = inspect.cleandoc(getattr(sys.modules.get(spec.module), "__doc__", None) or "")
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
    problems = []
    for section in SECTIONS:
        found = [p for p in paragraphs[1:] if p.startswith(section)]
        if not found:
            problems.append(f"{spec.id}: the module docstring has no paragraph starting with "
                            f"{section!r} (sections: {', '.join(SECTIONS)})")
        elif section == "Claim" and not _CITATION.search(found[0]):
            problems.append(f"{spec.id}: the Claim paragraph cites no source (authors and year)")
    return problems


def config_comments(config: type) -> dict[str, str]:
    """Field -> its comment (the ``# ...`` on the field's lines, or on the line above), for
    the fields a Config class defines itself; raises OSError when its source is unavailable."""
    source = textwrap.dedent(inspect.getsource(config))
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        span = lines[node.lineno - 1: node.end_lineno]
        notes = [line.split("#", 1)[1].strip() for line in span if "#" in line]
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        if not notes and above.startswith("#"):
            notes = [above.lstrip("#").strip()]
        found[node.target.id] = " ".join(notes)
    return found


def _config(spec: StudySpec) -> list[str]:
    problems = []
    try:
        comments = config_comments(spec.config)
    except (OSError, TypeError):
        return [f"{spec.id}: cannot read the source of {spec.config.__qualname__}"]
    for name in spec.config.model_fields:
        if name in comments and not comments[name]:
            problems.append(f"{spec.id}: Config field {name!r} has no comment saying what it is")
    for profile in PROFILES:
        try:
            spec.make_config(profile)
        except Exception as err:  # noqa: BLE001 - any failure to build is the finding
            problems.append(f"{spec.id}: the {profile} profile does not build: {err}")
    return problems


def _rules(spec: StudySpec) -> list[str]:
    problems = []
    for profile in PROFILES:
        try:
            cfg = spec.make_config(profile)
        except Exception:  # noqa: BLE001 - reported by _config
            continue
        for role, make in (("rule", spec.rule), ("control", spec.control)):
            rule = make(cfg)
            if not isinstance(rule, Rule):
                problems.append(f"{spec.id}: {role}(cfg) returned {type(rule).__name__}, "
                                "not a Rule from assay.study.rules")
                continue
            for found in reachable(rule).values():
                problems.extend(f"{spec.id} ({profile}) {role}: {p}" for p in found)
        problems.extend(f"{spec.id} ({profile}): {p}" for p in _confounds(spec, cfg))
    return problems


def _confounds(spec: StudySpec, cfg) -> list[str]:
    """A control built to fire must mark the unit confounded, whatever the claim's verdict."""
    claim, control = spec.rule(cfg).cases(), spec.control(cfg).cases()
    fired = control.get("supported")
    if not fired:
        return []  # reported by reachable
    problems = []
    for status in STATUSES:
        for metrics in claim.get(status, [])[:1]:
            result = spec.judge(cfg, Result(metrics=metrics, control=Control(metrics=fired[0])))
            if result.status != "confounded":
                problems.append(f"a control that fires left the unit {result.status!r}, "
                                "not 'confounded'")
            if result.verdict.status != status:
                problems.append(f"metrics built for {status!r} were judged "
                                f"{result.verdict.status!r} through the study")
    return problems

