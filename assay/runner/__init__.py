"""The runner: plan units from ``assay run`` arguments, execute them into a resumable store.

``plan`` validates and expands studies x organism replicates x seeds into content-keyed
`Unit`s; `Store` keeps unit records in SQLite and artifacts in a folder per unit; `execute`
claims and runs what is not done yet and returns every unit's `Record`; `replicated` reads
one study's units on several draws of its organism together.
"""

from assay.runner.display import LiveDisplay, PlainDisplay, make_display
from assay.runner.execute import Display, compute, execute, run_unit, set_threads
from assay.runner.plan import (
    DEFAULT_MODEL,
    Unit,
    first_results_first,
    parse_grid,
    parse_sets,
    plan,
    replicate_models,
)
from assay.runner.replicates import Replicated, combine, replicated
from assay.runner.store import Record, Store, default_store

__all__ = [
    "DEFAULT_MODEL", "Display", "LiveDisplay", "PlainDisplay", "Record", "Replicated", "Store",
    "Unit", "combine", "compute", "default_store", "execute", "first_results_first",
    "make_display", "parse_grid",
    "parse_sets", "plan", "set_threads",
    "replicate_models", "replicated", "run_unit",
]
