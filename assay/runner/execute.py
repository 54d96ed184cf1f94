"""Executing planned units against a store: claim, run, publish; skip what is done.

Units run one at a time in this process (`execute`), or as Ray tasks on a cluster
(`assay.runner.distributed`); both call `compute`, which runs one unit into a folder and
returns its judged result. A unit another live process holds is left to it and waited for at
the end, so two ``assay run`` processes on one store share the work and both end with every
unit finished. A unit that raises is recorded as failed with its error and the run goes on;
the next run retries it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from assay.errors import AssayError
from assay.runner.plan import Unit
from assay.runner.store import Record, Store
from assay.study import Context, Result, collect_provenance, get_study

__all__ = ["Display", "compute", "execute", "run_unit", "set_threads"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
POLL_SECONDS = 0.5


class Display(Protocol):
    """What the runner tells whoever shows progress (see assay.runner.display)."""

    def planned(self, units: Sequence[Unit]) -> None: ...
    def skipped(self, unit: Unit, record: Record) -> None: ...   # already done
    def waiting(self, units: Sequence[Unit]) -> None: ...         # held by another process
    def started(self, unit: Unit) -> None: ...
    def progress(self, unit: Unit, message: str, fraction: float) -> None: ...
    def finished(self, unit: Unit, record: Record) -> None: ...   # computed now: done or failed


class _Quiet:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def set_threads(threads: int | None) -> int:
    """Run torch on ``threads`` threads in this process (None leaves it as it is); returns
    the count it had before.

    Weights trained and numbers computed with different thread counts can differ in their
    last bits, so the count is part of what makes a run reproducible (provenance records it).
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise AssayError(f"bad thread count {threads}: give 1 or more")
        torch.set_num_threads(threads)
    return before


def execute(units: Sequence[Unit], store: Store, display: Display | None = None, *,
            threads: int | None = None) -> list[Record]:
    """Bring every unit to done (or failed) in this process, with torch on ``threads``
    threads (None: torch's default); returns their records in the order given."""
    shown: Display = display or _Quiet()  # type: ignore[assignment]
    before = set_threads(threads)
    try:
        return _execute(units, store, shown)
    finally:
        set_threads(before)


def _execute(units: Sequence[Unit], store: Store, shown: Display) -> list[Record]:
    shown.planned(units)
    tried: set[str] = set()  # a unit that fails is tried once per run, however it failed
    pending = list({u.key: u for u in units}.values())
    while pending:
        busy = []
        for unit in pending:
            state = take(unit, store, shown, tried)
            if state == "busy":
                busy.append(unit)
            elif state == "claimed":
                shown.finished(unit, run_unit(unit, store, shown))
        if busy:
            shown.waiting(busy)
            time.sleep(POLL_SECONDS)
        pending = busy
    return [store.record(u.key) for u in units]


def take(unit: Unit, store: Store, shown: Display, tried: set[str]) -> str:
    """Claim ``unit`` for this run: ``claimed`` (now ours, shown as started), ``busy`` (another
    process holds it) or ``skip`` (done, or failed once already in this run)."""
    record = store.record(unit.key)
    if record is not None and record.status == "failed" and unit.key in tried:
        return "skip"
    state = store.claim(unit)
    if state == "done":
        shown.skipped(unit, store.record(unit.key))
        return "skip"
    if state == "claimed":
        tried.add(unit.key)
        shown.started(unit)
    return state


def compute(unit: Unit, folder: Path, progress: Callable[[str, float], None] | None = None) -> Result:
    """Run ``unit``'s study with its artifacts written into ``folder``; returns the judged
    result with its provenance. Raises whatever the study raises."""
    spec = get_study(unit.study)
    start = time.perf_counter()
    cfg = spec.config.model_validate(unit.config)
    declared = spec.organisms(cfg, unit.model)
    ctx = Context(unit.seed, folder, model=unit.model, progress=progress, organisms=declared)
    ctx.torch_seed()
    result = spec.judge(cfg, spec.run(cfg, ctx))  # the declared rules read the metrics
    _check(result, spec.id, ctx)
    provenance = collect_provenance(cfg, seed=unit.seed, profile=unit.profile,
                                    model=str(unit.model), organisms=ctx.organisms,
                                    weights=ctx.weights,
                                    wall_seconds=time.perf_counter() - start,
                                    flops=ctx.flops or None)
    return result.model_copy(update={"provenance": provenance})


def failure_summary(err: BaseException) -> str:
    """The error line the store and the display show, then the traceback."""
    return f"{type(err).__name__}: {err}".splitlines()[0] + "\n" + traceback.format_exc()


def run_unit(unit: Unit, store: Store, display: Display | None = None) -> Record:
    """Compute one claimed unit, publish it to the store and return its record."""
    shown: Display = display or _Quiet()  # type: ignore[assignment]
    scratch = store.scratch_dir(unit.key)
    beat = [time.monotonic()]

    def progress(message: str, fraction: float) -> None:
        shown.progress(unit, message, fraction)
        if time.monotonic() - beat[0] > HEARTBEAT_SECONDS:
            store.heartbeat(unit.key)
            beat[0] = time.monotonic()

    try:
        store.finish(unit.key, scratch, compute(unit, scratch, progress))
    except (KeyboardInterrupt, SystemExit):
        store.release(unit.key)
        raise
    except Exception as err:
        log.debug("unit %s failed", unit.label, exc_info=True)
        store.fail(unit.key, failure_summary(err))
    return store.record(unit.key)


def _check(result: Result, study: str, ctx: Context) -> None:
    missing = [f for f in result.figures if not (ctx.artifacts / f).is_file()]
    if missing:
        raise AssayError(f"study '{study}' lists figures it did not write: {', '.join(missing)} "
                         "(save them with ctx.artifact(name))")
