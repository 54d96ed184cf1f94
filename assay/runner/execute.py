"""Executing planned units against a store: claim, run, publish; skip what is done.

Units run one at a time in this process. A unit another live process holds is left to it and
waited for at the end, so two ``assay run`` processes on one store share the work and both
end with every unit finished. A unit that raises is recorded as failed with its error and
the run goes on; the next run retries it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from typing import Protocol

from assay.errors import AssayError
from assay.runner.plan import Unit
from assay.runner.store import Record, Store
from assay.study import Context, Result, collect_provenance, get_study

__all__ = ["Display", "execute", "run_unit"]

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


def execute(units: Sequence[Unit], store: Store, display: Display | None = None) -> list[Record]:
    """Bring every unit to done (or failed); returns their records in the order given."""
    shown: Display = display or _Quiet()  # type: ignore[assignment]
    shown.planned(units)
    tried: set[str] = set()  # a unit that fails is tried once per run, however it failed
    pending = list({u.key: u for u in units}.values())
    while pending:
        busy = []
        for unit in pending:
            record = store.record(unit.key)
            if record is not None and record.status == "failed" and unit.key in tried:
                continue
            state = store.claim(unit)
            if state == "done":
                shown.skipped(unit, store.record(unit.key))
            elif state == "busy":
                busy.append(unit)
            else:
                tried.add(unit.key)
                shown.started(unit)
                shown.finished(unit, run_unit(unit, store, shown))
        if busy:
            shown.waiting(busy)
            time.sleep(POLL_SECONDS)
        pending = busy
    return [store.record(u.key) for u in units]


def run_unit(unit: Unit, store: Store, display: Display | None = None) -> Record:
    """Compute one claimed unit, publish it to the store and return its record."""
    shown: Display = display or _Quiet()  # type: ignore[assignment]
    spec = get_study(unit.study)
    scratch = store.scratch_dir(unit.key)
    beat = [time.monotonic()]

    def progress(message: str, fraction: float) -> None:
        shown.progress(unit, message, fraction)
        if time.monotonic() - beat[0] > HEARTBEAT_SECONDS:
            store.heartbeat(unit.key)
            beat[0] = time.monotonic()

    ctx = Context(unit.seed, scratch, model=unit.model, progress=progress)
    start = time.perf_counter()
    try:
        cfg = spec.config.model_validate(unit.config)
        ctx.torch_seed()
        result = spec.judge(cfg, spec.run(cfg, ctx))  # the declared rules read the metrics
        _check(result, spec.id, ctx)
        provenance = collect_provenance(cfg, seed=unit.seed, profile=unit.profile,
                                        model=str(unit.model), organisms=ctx.organisms,
                                        wall_seconds=time.perf_counter() - start,
                                        flops=ctx.flops or None)
        store.finish(unit.key, scratch, result.model_copy(update={"provenance": provenance}))
    except (KeyboardInterrupt, SystemExit):
        store.release(unit.key)
        raise
    except Exception as err:
        log.debug("unit %s failed", unit.label, exc_info=True)
        summary = f"{type(err).__name__}: {err}".splitlines()[0]
        store.fail(unit.key, summary + "\n" + traceback.format_exc())
    return store.record(unit.key)


def _check(result: Result, study: str, ctx: Context) -> None:
    missing = [f for f in result.figures if not (ctx.artifacts / f).is_file()]
    if missing:
        raise AssayError(f"study '{study}' lists figures it did not write: {', '.join(missing)} "
                         "(save them with ctx.artifact(name))")
