"""The HTML report: the agenda map with coverage and verdicts, then a section per study.

One self-contained file: styles inline, figures embedded as data URIs, no scripts, nothing
fetched. Jinja2 autoescapes every value, so model outputs and config strings show as text.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from assay.agenda import GROUPS, SOURCE, challenges
from assay.errors import AssayError
from assay.models import ModelSpec
from assay.runner.replicates import replicated
from assay.runner.store import Record, Store
from assay.study import discover, studies
from assay.study.figures import EPISODE_TABLE, PLANE_TABLE, data_uri, new_figure
from assay.training.card import floors_for, meets
from assay.training.organisms import cached, card

__all__ = ["render_report", "write_report"]

_TURN_CSS = {"assistant (call)": "call", "tool": "tool", "checks": "checks"}
MAX_TABLE_ROWS = 60  # longer tables are cut in the report (the store keeps them whole)
VERDICT_CSS = {"supported": "supported", "not supported": "refuted", "inconclusive": "unclear",
               "confounded": "confounded"}


def _env() -> Environment:
    env = Environment(loader=PackageLoader("assay.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["verdict_css"] = lambda status: VERDICT_CSS.get(status, "unclear")
    env.filters["prose"] = prose
    return env


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.3f}"
    return str(value)


def render_report(store: Store) -> str:
    """The report of everything finished in ``store``, as one HTML string."""
    discover()
    done = store.records(status="done")
    failed = store.records(status="failed")
    by_study: dict[str, list[Record]] = {}
    for record in done:
        by_study.setdefault(record.study, []).append(record)

    across = {}
    for r in replicated(done):
        across.setdefault(r.study, []).append(r)
    registered = {s.id: s for s in studies()}
    sections = []
    for sid in sorted(set(registered) | set(by_study)):
        spec = registered.get(sid)
        records = by_study.get(sid, [])
        sections.append({
            "id": sid, "title": spec.title if spec else sid,
            "claim": paragraphs(spec.claim)[:1] if spec else [],
            "design": paragraphs(spec.claim)[1:] if spec else [],
            "agenda": list(spec.agenda) if spec else [], "registered": spec is not None,
            "needs": _needs(spec) if spec else "", "units": [_unit(r) for r in records],
            "verdicts": Counter(r.result.status for r in records),  # "confounded" counts apart
            "replicated": across.get(sid, []),
        })
        sections[-1]["filter"] = _filter_classes(sections[-1])
    study_index = {s["id"]: s for s in sections}

    groups = []
    covered = 0
    for gid, gname in GROUPS.items():
        rows = []
        for ch in challenges():
            if ch.group != gid:
                continue
            ids = [s for s in study_index if ch.id in study_index[s]["agenda"]]
            ran = [s for s in ids if study_index[s]["units"]]
            covered += bool(ran)
            rows.append({"id": ch.id, "title": ch.title, "summary": ch.summary,
                         "studies": [study_index[s] for s in ids], "covered": bool(ran)})
        groups.append({"id": gid, "name": gname, "challenges": rows})

    return _env().get_template("report.html.j2").render(
        groups=groups, sections=sections, failed=[_failed(r) for r in failed],
        organisms=_organism_cards(done),
        joint_frontier=_joint_frontier(by_study),
        covered=covered, total=sum(len(g["challenges"]) for g in groups), source=SOURCE,
        n_units=len(done), store=str(store.root.resolve()),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(store: Store, out: str | Path | None = None) -> Path:
    """Write the report atomically (temporary file, then rename); returns its path."""
    path = Path(out) if out is not None else store.root / "report.html"
    if path.is_dir():
        raise AssayError(f"--out {path} is a folder: give a file name, e.g. {path / 'report.html'}")
    html = render_report(store)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    except OSError as err:
        raise AssayError(f"cannot write the report in {path.parent} ({err.strerror or err}): "
                         "give a writable --out") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_CODE = re.compile(r"``(.+?)``|`([^`]+?)`", re.S)


def prose(text: str) -> Markup:
    """A docstring paragraph as HTML: escaped, with ``code`` and `name` spans as <code>."""
    out, last = [], 0
    for m in _CODE.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(Markup("<code>%s</code>") % (m.group(1) or m.group(2)))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


FILTERS = {"supported": "supported", "not supported": "refuted", "inconclusive": "unclear",
           "confounded": "confounded", "not run": "none"}


def _filter_classes(section: dict[str, Any]) -> str:
    """CSS classes the report's verdict filter selects a study by: its combined verdicts
    across draws where it has them, else its units' outcomes; ``f-none`` when nothing ran."""
    statuses = {r.status for r in section["replicated"]} or set(section["verdicts"])
    return " ".join(sorted(f"f-{FILTERS.get(s, 'unclear')}" for s in statuses)) or "f-none"


def _clear_stale(folder: Path, older_than: float = 3600.0) -> None:
    """Remove temporary reports that a killed writer left (only old ones: another process
    may be writing one right now)."""
    now = time.time()
    for tmp in folder.glob(".report-*.html"):
        try:
            if now - tmp.stat().st_mtime > older_than or tmp.stat().st_size == 0 and \
                    now - tmp.stat().st_mtime > 60:
                tmp.unlink()
        except OSError:
            pass


def _organism_cards(done: list[Record]) -> list[dict[str, Any]]:
    """The evaluation card of every organism a finished unit ran on, with each rate's floor.

    Cards are computed once per organism and kept beside its weights; an organism that is
    no longer in the cache (or was retrained since) is listed without one. The report never
    trains anything.
    """
    names = sorted({ModelSpec.parse(r.model).organism for r in done
                    if r.model.startswith("organism:")})
    out = []
    for name in names:
        try:
            body = card(name) if cached(name) else None
        except AssayError:
            body = None
        if body is None:
            out.append({"name": name, "rows": [], "missing": True})
            continue
        rows = []
        floors = floors_for(name)
        for key, value in sorted(body.items()):
            if key.endswith("_n") or not isinstance(value, float) or key.endswith("seconds"):
                continue
            floor = floors.get(key)
            rows.append({"key": key, "value": value, "n": body.get(f"{key}_n"),
                         "floor": " ".join(map(str, floor)) if floor else "",
                         "ok": floor is not None and meets(value, floor)})
        out.append({"name": name, "rows": rows, "missing": False,
                    "params": body.get("params"), "train_seconds": body.get("train_seconds")})
    return out


def _needs(spec) -> str:
    n = spec.needs
    parts = [p for p, on in (("white-box", n.white_box), ("trainable", n.trainable),
                             ("chat", n.chat)) if on]
    return ", ".join(parts) or "black-box"


def _unit(record: Record) -> dict[str, Any]:
    r = record.result
    prov = r.provenance
    figures = []
    for name in r.figures:
        uri = data_uri(record.folder / name)
        figures.append({"name": name, "uri": uri})
    tables = []
    episode = [{"role": row.get("role", ""), "text": str(row.get("text", "")),
                "css": _TURN_CSS.get(str(row.get("role", "")), "")}
               for row in r.tables.get(EPISODE_TABLE, [])]
    for name, rows in r.tables.items():
        if name == EPISODE_TABLE:
            continue
        columns = list(dict.fromkeys(k for row in rows for k in row))
        tables.append({"name": name, "columns": columns, "rows": rows[:MAX_TABLE_ROWS],
                       "total": len(rows)})
    return {
        "key": record.key, "model": record.model, "profile": record.profile, "seed": record.seed,
        "config": sorted(record.config.items()), "verdict": r.verdict, "status": r.status,
        "confounded": r.confounded,
        "metrics": sorted(r.metrics.items()), "control": r.control, "tables": tables,
        "figures": figures, "notes": r.notes, "episode": episode, "provenance": prov,
        "wall": record.wall_seconds, "intact": record.intact,
    }


def _joint_frontier(by_study: dict[str, list[Record]]) -> str | None:
    """One figure (data URI) with every study's points on the safety-performance plane: each
    study that has such points returns them as its `PLANE_TABLE` table (series, protection,
    benign_accuracy, optional label); drawn once two studies have put points there."""
    series: dict[str, list[dict[str, Any]]] = {}
    studies_seen = set()
    for sid, records in sorted(by_study.items()):
        for record in records:
            for row in record.result.tables.get(PLANE_TABLE, []):
                series.setdefault(f"{row['series']} ({sid})", []).append(row)
                studies_seen.add(sid)
    if len(studies_seen) < 2:
        return None
    import matplotlib.pyplot as plt

    fig, ax = new_figure(width=6.5, height=4.2)
    markers = "osD^vP*Xh<>"
    for i, (name, rows) in enumerate(sorted(series.items())):
        ax.scatter([r["protection"] for r in rows], [r["benign_accuracy"] for r in rows],
                   marker=markers[i % len(markers)], s=26, label=name)
        for r in rows:
            if r.get("label"):
                ax.annotate(str(r["label"]), (r["protection"], r["benign_accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel("protection (each study's own measure, 0 = none, 1 = complete)")
    ax.set_ylabel("benign accuracy")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(0, 1.05)
    ax.set_title("Safety-performance plane")
    ax.legend(fontsize=7, loc="lower left")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _failed(record: Record) -> dict[str, Any]:
    first = (record.error or "").splitlines()[0] if record.error else "unknown error"
    return {"study": record.study, "seed": record.seed, "model": record.model,
            "key": record.key, "error": first, "attempts": record.attempts}
