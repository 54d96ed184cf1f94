"""Planning: ``assay run`` arguments -> units (study, config, model, seed), each content-keyed.

Everything a run could get wrong before it starts (unknown study, model spec, config key or
value, bad seeds) is caught here, before the store is touched.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assay.errors import AssayError
from assay.models import ModelSpec
from assay.study import StudySpec, discover, get_study

__all__ = ["DEFAULT_MODEL", "KEY_VERSION", "Unit", "first_results_first", "parse_grid",
           "parse_sets", "plan"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "organism:s"
KEY_VERSION = 2  # bump when the meaning of a stored result changes for the same inputs


@dataclass(frozen=True, eq=False)
class Unit:
    """One study run: the smallest thing the store keeps and never recomputes."""

    study: str
    profile: str               # quick or full: how the config was made
    config: dict[str, Any]     # the study config as JSON
    model: ModelSpec           # the parsed model spec, e.g. organism:s
    model_key: str             # the spec plus its version (organism recipe hash)
    seed: int
    point: tuple[tuple[str, str], ...] = ()  # the --grid values that made it (shown, not keyed)
    organisms: tuple[str, ...] = ()  # the organisms it loads (its study's declaration; not keyed)

    @property
    def key(self) -> str:
        """Content hash (20 hex digits) of everything that determines the result."""
        body = {"v": KEY_VERSION, "study": self.study, "config": self.config,
                "model": self.model_key, "seed": self.seed}
        blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unit) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def label(self) -> str:
        swept = "".join(f" {k}={v}" for k, v in self.point)
        return f"{self.study}{swept} seed={self.seed} model={self.model}"


def parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; a pair without ``=`` is an error."""
    sets: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AssayError(f"bad --set {pair!r}: write key=value, e.g. --set steps=40")
        sets[key.strip()] = value
    return sets


def parse_grid(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``["k=a,b,c", ...]`` -> ``{k: [a, b, c]}``: config values to sweep, one unit each."""
    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        choices = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(choices):
            raise AssayError(f"bad --grid {pair!r}: write key=a,b,c, e.g. --grid steps=20,40,80")
        if key in grid:
            raise AssayError(f"--grid names {key} twice: give its values once, comma-separated")
        grid[key] = list(dict.fromkeys(choices))
    return grid


def _sweep(sets: Mapping[str, str], grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, each on top of the fixed ``sets``."""
    clash = sorted(set(sets) & set(grid))
    if clash:
        raise AssayError(f"{', '.join(clash)} given both by --set and by --grid: keep one")
    keys = list(grid)
    return [{**sets, **dict(zip(keys, values))}
            for values in itertools.product(*(grid[k] for k in keys))]


def replicate_models(model: ModelSpec, replicates: int) -> list[ModelSpec]:
    """``model`` and its organism replicates 1..replicates-1 (``organism:s`` ->
    ``organism:s``, ``organism:s~1``, ...): the same recipe trained with other seeds."""
    if replicates < 1:
        raise AssayError(f"bad --replicates {replicates}: give 1 or more")
    if replicates == 1:
        return [model]
    if not model.is_organism:
        raise AssayError(f"--replicates needs an organism model: {model} is one fixed set of "
                         "weights; run it with --replicates 1")
    from assay.training.recipes import replicate_name

    return [ModelSpec.parse(f"organism:{replicate_name(model.organism, k)}")
            for k in range(replicates)]


def plan(studies: Sequence[str] = (), *, model: str | ModelSpec = DEFAULT_MODEL,
         profile: str = "quick", seeds: Sequence[int] = (0,),
         sets: Mapping[str, str] | None = None, replicates: int = 1,
         grid: Mapping[str, Sequence[str]] | None = None) -> list[Unit]:
    """The units of one ``assay run``: every study x replicate x seed, validated, in a
    stable order.

    No study named means every registered study. ``sets`` apply to every named study, so a
    key must be valid for each of them. Each study's `Needs` is checked against the model
    here: a study named on the command line that the model cannot serve is an error; with no
    study named, such studies are left out (and listed in the log). ``replicates`` > 1 runs
    each study that reads the model on that many replicates of the organism
    (`replicate_models`); a study that trains its own models (``Needs.model`` False) runs once.
    ``grid`` sweeps config keys over values (`parse_grid`): one unit per combination.
    """
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.models import check_spec

    registered = discover()
    if not registered:
        raise AssayError("no studies are registered: reinstall assay (pip install -e .)")
    specs: list[StudySpec] = [get_study(s) for s in dict.fromkeys(studies)] or \
        [get_study(s) for s in registered]
    if not seeds:
        raise AssayError("no seeds given: pass --seeds N or --seed S")
    if any(s < 0 for s in seeds):
        raise AssayError(f"bad seed in {list(seeds)}: seeds are non-negative integers")
    model = ModelSpec.parse(model)
    draws = replicate_models(model, replicates)
    model_key = check_spec(model)
    models = [(m, check_spec(m)) for m in draws]
    unmet = {s.id: why for s in specs if (why := s.needs.unmet(model, s.id))}
    if unmet and studies:
        raise AssayError(next(iter(unmet.values())))
    specs = [s for s in specs if s.id not in unmet]
    for why in unmet.values():
        log.warning("skipped: %s", why)
    if not specs:
        raise AssayError(f"no registered study can run on {model}: {next(iter(unmet.values()))}")
    sweep = _sweep(dict(sets or {}), grid or {})
    units: dict[str, Unit] = {}  # two grid values that parse alike make one unit
    checked: set[str] = set()
    for spec in specs:
        runs_on = models if spec.needs.model else [(model, model_key)]
        for point in sweep:
            cfg = spec.make_config(profile, point)
            if why := spec.needs.unmet(model, spec.id, cfg):  # needs that depend on the config
                raise AssayError(why)
            config = cfg.model_dump(mode="json")
            shown = tuple((k, point[k]) for k in (grid or {}))
            for m, key in runs_on:
                # an api: model's organisms are served elsewhere: nothing to train here
                loads = () if m.is_api else tuple(spec.organisms(cfg, m))
                for name in set(loads) - checked:  # a damaged cache or an unwritable one: now
                    check_spec(ModelSpec.parse(f"organism:{name}"))
                    checked.add(name)
                for seed in dict.fromkeys(seeds):
                    unit = Unit(spec.id, profile, config, m, key, int(seed), shown, loads)
                    units.setdefault(unit.key, unit)
    return list(units.values())


def first_results_first(units: Sequence[Unit]) -> list[Unit]:
    """``units`` in the order that fills the report soonest: each next unit is the one that
    needs the least organism training beyond what the units before it trained (estimated,
    `assay.training.schedule`), then studies reading the run's model before those that train
    their own; ties keep the order given. Cold, studies that need no organism come first,
    then those that need only the run's model, and the scaling ladder last."""
    from assay.training.schedule import stage_seconds

    cost = {name: stage_seconds(name) for u in units for name in u.organisms}
    trained: set[str] = set()
    pending, out = list(units), []

    def rank(u: Unit) -> tuple[float, bool]:
        stages = {k: s for name in u.organisms for k, s in cost[name].items()}
        return (sum(s for k, s in stages.items() if k not in trained),
                not get_study(u.study).needs.model)

    while pending:
        best = min(pending, key=rank)  # the first of equals: the order given breaks ties
        pending.remove(best)
        out.append(best)
        trained.update(k for name in best.organisms for k in cost[name])
    return out
