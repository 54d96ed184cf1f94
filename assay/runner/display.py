"""How a run shows its progress: a live rich display on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from assay.runner.plan import Unit
from assay.runner.store import Record

__all__ = ["LiveDisplay", "PlainDisplay", "make_display"]


def _outcome(record: Record) -> str:
    if record.status == "failed":
        return "FAILED: " + (record.error or "").splitlines()[0] if record.error else "FAILED"
    verdict = record.result.status if record.result else "?"  # "confounded" when the control fired
    wall = f" ({record.wall_seconds:.1f} s)" if record.wall_seconds is not None else ""
    return f"{verdict}{wall}"


class PlainDisplay:
    """One line per event, and one per tenth of a unit's progress; for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.n = 0
        self.seen = 0
        self._tenth: dict[str, int] = {}
        self._waiting: tuple[str, ...] = ()

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def planned(self, units: Sequence[Unit]) -> None:
        self.n = len(units)
        self._line(f"assay run: {self.n} unit(s)")

    def skipped(self, unit: Unit, record: Record) -> None:
        self.seen += 1
        self._line(f"[{self.seen}/{self.n}] stored  {unit.label}: {_outcome(record)}")

    def waiting(self, units: Sequence[Unit]) -> None:
        keys = tuple(u.key for u in units)
        if keys != self._waiting:
            self._waiting = keys
            self._line(f"waiting for {len(units)} unit(s) another assay run is computing")

    def started(self, unit: Unit) -> None:
        self._tenth[unit.key] = -1
        self._line(f"[{self.seen + 1}/{self.n}] running {unit.label}")

    def progress(self, unit: Unit, message: str, fraction: float) -> None:
        tenth = int(fraction * 10)
        if tenth != self._tenth.get(unit.key, -1):  # phases (training, then the study) restart at 0
            self._tenth[unit.key] = tenth
            self._line(f"    {unit.study}: {fraction:4.0%} {message}")

    def finished(self, unit: Unit, record: Record) -> None:
        self.seen += 1
        self._line(f"[{self.seen}/{self.n}] {record.status:7s} {unit.label}: {_outcome(record)}")


class LiveDisplay:
    """A rich display: units done / running / queued with an ETA, and a bar per running unit
    (several at once when an executor runs units side by side)."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                            TaskProgressColumn(), TextColumn("{task.fields[status]}", markup=False),
                            TimeElapsedColumn(), console=console, transient=True)
        self.n = 0
        self.done = 0
        self.computed: list[float] = []
        self._units = None
        self._running: dict[str, tuple[int, float]] = {}  # unit key -> (bar task, start time)

    def __enter__(self) -> LiveDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def _status(self) -> str:
        running = len(self._running)
        queued = self.n - self.done - running
        eta = ""
        if self.computed:
            mean = sum(self.computed) / len(self.computed)
            now = time.monotonic()
            left = queued * mean + sum(max(0.0, mean - (now - t)) for _, t in self._running.values())
            left /= max(1, running)  # units side by side share the remaining time
            eta = f" · ETA {int(left // 60)}m{int(left % 60):02d}s"
        return f"{self.done} done · {running} running · {queued} queued{eta}"

    def _refresh(self) -> None:
        self.bar.update(self._units, completed=self.done, status=self._status())

    def _print(self, style: str, word: str, unit: Unit, outcome: str) -> None:
        from rich.text import Text

        line = Text(word, style=style)
        line.append(f"  {unit.label}: {outcome}")  # labels and errors are never read as markup
        self.console.print(line, highlight=False)

    def planned(self, units: Sequence[Unit]) -> None:
        self.n = len(units)
        self._units = self.bar.add_task("units", total=self.n, status="")
        self._refresh()

    def skipped(self, unit: Unit, record: Record) -> None:
        self.done += 1
        self._print("dim", "stored", unit, _outcome(record))
        self._refresh()

    def waiting(self, units: Sequence[Unit]) -> None:
        self.bar.update(self._units, status=self._status() + f" · waiting on {len(units)} "
                        "held by another run")

    def started(self, unit: Unit) -> None:
        task = self.bar.add_task(unit.label, total=1.0, status="starting")
        self._running[unit.key] = (task, time.monotonic())
        self._refresh()

    def progress(self, unit: Unit, message: str, fraction: float) -> None:
        if unit.key in self._running:
            self.bar.update(self._running[unit.key][0], completed=fraction, status=message[:60])

    def finished(self, unit: Unit, record: Record) -> None:
        if unit.key in self._running:
            task, started = self._running.pop(unit.key)
            self.bar.remove_task(task)
            self.computed.append(time.monotonic() - started)
        self.done += 1
        style = "red" if record.status == "failed" else "green"
        self._print(style, record.status, unit, _outcome(record))
        self._refresh()


def make_display(console, plain_stream: TextIO | None = None):
    """A LiveDisplay when ``console`` is a terminal, else a PlainDisplay (use as a context)."""
    if console.is_terminal:
        return LiveDisplay(console)
    return _Plain(PlainDisplay(plain_stream))


class _Plain:
    def __init__(self, display: PlainDisplay) -> None:
        self.display = display

    def __enter__(self) -> PlainDisplay:
        return self.display

    def __exit__(self, *exc) -> None:
        pass
