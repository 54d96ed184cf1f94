"""`studies_markdown`: the catalogue of studies as Markdown, generated from the studies.

Everything comes from the registered studies themselves: the module docstring (title,
claim, setup, verdict, control), the declared decision rules' test sentences, the needs, and
each Config field with its quick and full value and its comment. ``docs/studies.md`` is this
text; a test fails when the file is stale (``assay docs --out docs/studies.md`` rewrites it).
"""

from __future__ import annotations

import inspect
import json
import sys

from assay.agenda import challenge
from assay.study import discover, studies
from assay.study.conformance import config_comments

__all__ = ["studies_markdown"]


def studies_markdown() -> str:
    """The Markdown page describing every registered study (built-in and extra modules)."""
    discover()
    specs = studies()
    lines = ["# Studies", "",
             "Generated from the studies' docstrings, decision rules and configs by",
             "`assay docs --out docs/studies.md`; do not edit by hand. Results live in the",
             "report (`assay report`), not here.", "",
             "| study | agenda | title |", "| --- | --- | --- |"]
    lines += [f"| [{s.id}](#{s.id}) | {', '.join(s.agenda)} | {s.title} |" for s in specs]
    for spec in specs:
        lines += ["", f"## {spec.id}", ""]
        agenda = "; ".join(f"{a} {challenge(a).title}" for a in spec.agenda)
        needs = ", ".join(k.replace("_", "-") for k, v in spec.needs.as_dict().items()
                      if v is True) or "nothing"
        lines += [f"**{spec.title}** Agenda: {agenda}. Needs: {needs}.", ""]
        doc = inspect.cleandoc(getattr(sys.modules.get(spec.module), "__doc__", None) or "")
        lines += [" ".join(p.split()) + "\n" for p in doc.split("\n\n")[1:]]
        quick, full = spec.make_config("quick"), spec.make_config("full")
        lines += [f"*Decision rule (quick profile):* {spec.rule(quick).test()}.", "",
                  f"*Control rule:* {spec.control(quick).test()}.", ""]
        comments = config_comments(spec.config)
        lines += ["| config | quick | full | meaning |", "| --- | --- | --- | --- |"]
        for name in spec.config.model_fields:
            q, f = getattr(quick, name), getattr(full, name)
            lines.append(f"| `{name}` | {_value(q)} | {_value(f) if f != q else '='} | "
                         f"{comments.get(name, '')} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n").rstrip() + "\n"


def _value(v) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict, tuple)) else str(v)
    text = text if len(text) <= 40 else text[:37] + "..."
    return "`" + text.replace("|", "\\|") + "`"
