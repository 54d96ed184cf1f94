"""The runner: plan units from ``assay run`` arguments, execute them into a resumable store.

``plan`` validates and expands studies x seeds into content-keyed `Unit`s; `Store` keeps unit
records in SQLite and artifacts in a folder per unit; `execute` claims and runs what is not
done yet and returns every unit's `Record`.
"""

from assay.runner.display import LiveDisplay, PlainDisplay, make_display
from assay.runner.execute import Display, execute, run_unit
from assay.runner.plan import DEFAULT_MODEL, Unit, parse_sets, plan
from assay.runner.store import Record, Store, default_store

__all__ = [
    "DEFAULT_MODEL", "Display", "LiveDisplay", "PlainDisplay", "Record", "Store", "Unit",
    "default_store", "execute", "make_display", "parse_sets", "plan", "run_unit",
]
