"""The study registry: ``@study(...)`` registers a run function; `discover` imports them all.

Registration is the only thing a study module does when imported. The decorator reads the
Config class from the annotation of ``run``'s first parameter, and the title and claim from
the module docstring (first paragraph: title; the rest: the claim). It also takes the study's
declared decision rules: ``rule(cfg) -> Rule`` decides the verdict on the result's metrics,
``control(cfg) -> Rule`` (default: the same rule) reads the control's metrics. The runner
applies both (`StudySpec.judge`); a study never writes its own verdict. A study that loads
organisms besides the unit's model declares them, ``organisms(cfg, model) -> names``, so a run
can say what it will train, check the cached ones and order its units before any starts;
the runner refuses a request the declaration left out.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass

from assay.agenda import challenge
from assay.errors import AssayError
from assay.study.base import Needs, Result, StudyConfig
from assay.study.rules import Rule

__all__ = ["StudySpec", "discover", "get_study", "studies", "studies_for", "study"]

RunFn = Callable[..., Result]
RuleFn = Callable[..., Rule]  # (cfg) -> Rule
OrganismsFn = Callable[..., "list[str]"]  # (cfg, model: ModelSpec) -> organism names
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
EXTRA_MODULES = "ASSAY_STUDY_MODULES"
CATALOGUE = "assay.studies"  # the package whose modules are the built-in studies

_REGISTRY: dict[str, StudySpec] = {}


@dataclass(frozen=True)
class StudySpec:
    id: str                   # e.g. "backdoor-persistence"
    agenda: tuple[str, ...]   # challenge ids it addresses, e.g. ("3.6",)
    needs: Needs              # what it needs of the model
    config: type[StudyConfig]  # its Config class
    run: RunFn                # run(cfg, ctx) -> Result
    title: str                # first paragraph of the module docstring
    claim: str                # the rest of the module docstring
    module: str               # the defining module's name
    rule: RuleFn              # rule(cfg) -> Rule: the declared decision on the metrics
    control: RuleFn           # control(cfg) -> Rule: the same test read on the control
    extra: OrganismsFn | None = None  # organisms(cfg, model): the others it loads

    def organisms(self, cfg: StudyConfig, model) -> list[str]:
        """The organisms a unit of this study on ``model`` may load (``s``, ``s-retain``,
        ``s@pretrain``): the model itself when the study reads it and it is an organism, then
        the declared others. The runner refuses a request outside this list."""
        own = ([model.organism]
               if self.needs.model and (model.is_organism or model.served is not None) else [])
        extra = list(self.extra(cfg, model)) if self.extra is not None else []
        return list(dict.fromkeys(own + extra))

    def make_config(self, profile: str = "quick", sets=None) -> StudyConfig:
        """The study's config for ``profile`` with ``--set`` strings applied."""
        return self.config.make(profile, sets, study=self.id)

    def judge(self, cfg: StudyConfig, result: Result) -> Result:
        """``result`` with its verdict and its control's verdict read by the declared rules."""
        if not isinstance(result, Result):
            raise AssayError(f"study '{self.id}' returned {type(result).__name__}, not a Result")
        if result.verdict is not None or result.control.verdict is not None:
            raise AssayError(f"study '{self.id}' wrote a verdict itself: return only metrics and "
                             "declare the decision with @study(rule=..., control=...)")
        verdict = self.rule(cfg).decide(result.metrics)
        control = self.control(cfg).decide(result.control.metrics)
        return result.model_copy(update={
            "verdict": verdict,
            "control": result.control.model_copy(update={"verdict": control})})


def study(id: str, agenda: list[str], needs: Needs = Needs(), *, rule: RuleFn,
          control: RuleFn | None = None,
          organisms: OrganismsFn | None = None) -> Callable[[RunFn], RunFn]:
    """Register ``run(cfg: Config, ctx: Context) -> Result`` as study ``id``.

    ``rule(cfg)`` returns the `Rule` that decides the verdict from the result's metrics;
    ``control(cfg)`` the one that reads the control's metrics (default: ``rule`` itself, the
    claim's own test read where the effect must be absent). ``organisms(cfg, model)`` names
    the organisms the study loads besides the unit's model (default: none); the runner
    plans their training and refuses any other.
    """
    if not isinstance(id, str) or not _ID.match(id):
        raise AssayError(f"bad study id {id!r}: use lower-case letters, digits and dashes, "
                         "e.g. 'backdoor-persistence'")
    if isinstance(agenda, str) or not agenda:
        raise AssayError(f"study '{id}' needs a non-empty list of agenda ids, e.g. agenda=['3.6']")
    ids = tuple(dict.fromkeys(challenge(a).id for a in agenda))  # unknown ids raise here
    if not callable(rule) or (control is not None and not callable(control)):
        raise AssayError(f"study '{id}': rule and control are functions cfg -> Rule "
                         "(see assay.study.rules)")
    if organisms is not None and not callable(organisms):
        raise AssayError(f"study '{id}': organisms is a function (cfg, model) -> names, "
                         "e.g. lambda cfg, model: [\"s-retain\"]")

    def register(run: RunFn) -> RunFn:
        if id in _REGISTRY:
            raise AssayError(f"duplicate study id '{id}': already registered by "
                             f"{_REGISTRY[id].module}; give this study another id")
        config = _config_class(id, run)
        title, claim = _claim(id, run.__module__)
        _REGISTRY[id] = StudySpec(id=id, agenda=ids, needs=needs, config=config, run=run,
                                  title=title, claim=claim, module=run.__module__, rule=rule,
                                  control=control or rule, extra=organisms)
        return run

    return register


def _config_class(id: str, run: RunFn) -> type[StudyConfig]:
    params = list(inspect.signature(run).parameters)
    if len(params) != 2:
        raise AssayError(f"study '{id}': run must take (cfg, ctx), got ({', '.join(params)})")
    try:
        hints = typing.get_type_hints(run)
    except Exception as err:
        raise AssayError(f"study '{id}': cannot resolve the type annotations of run ({err}); "
                         "define the Config class at module level") from None
    config = hints.get(params[0])
    if not (isinstance(config, type) and issubclass(config, StudyConfig)):
        raise AssayError(f"study '{id}': annotate run's first parameter with the study's Config, "
                         f"a StudyConfig subclass (got {config!r})")
    return config


def _claim(id: str, module: str) -> tuple[str, str]:
    doc = inspect.cleandoc(getattr(sys.modules.get(module), "__doc__", None) or "")
    title, _, claim = doc.partition("\n\n")
    title, claim = " ".join(title.split()), claim.strip()
    if not title or not claim:
        raise AssayError(f"study '{id}': module {module} needs a docstring with a title "
                         "paragraph, a blank line, then the claim")
    return title, claim


def _load(name: str) -> None:
    """Import module ``name``; re-run it if it was imported but its studies were dropped."""
    if name in sys.modules and not any(s.module == name for s in _REGISTRY.values()):
        importlib.reload(sys.modules[name])
    else:
        importlib.import_module(name)


def get_study(id: str) -> StudySpec:
    """The registered study ``id``; an unknown id raises AssayError listing the valid ones."""
    found = _REGISTRY.get(id)
    if found is None:
        if not _REGISTRY:
            raise AssayError(f"unknown study {id!r}: no studies are registered yet")
        raise AssayError(f"unknown study {id!r}: valid ids are {', '.join(sorted(_REGISTRY))}")
    return found


def studies() -> list[StudySpec]:
    """Every registered study, sorted by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def studies_for(challenge_id: str) -> list[str]:
    """Ids of the studies that address challenge ``challenge_id`` (e.g. "3.6"), sorted."""
    cid = challenge(challenge_id).id
    return [s.id for s in studies() if cid in s.agenda]


def discover() -> list[str]:
    """Import every study module in assay.studies, then those ``$ASSAY_STUDY_MODULES`` names.

    ``ASSAY_STUDY_MODULES`` is a comma-separated list of importable modules holding studies
    of your own (they must be on the Python path); returns the ids registered afterwards.
    """
    package = importlib.import_module(CATALOGUE)  # by name: the catalogue sits above this layer
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        _load(f"{CATALOGUE}.{info.name}")
    for name in filter(None, (m.strip() for m in os.environ.get(EXTRA_MODULES, "").split(","))):
        try:
            _load(name)
        except ImportError as err:
            raise AssayError(f"cannot import study module {name!r} named in ${EXTRA_MODULES} "
                             f"({err}); put it on PYTHONPATH or remove it from the list") from None
    return sorted(_REGISTRY)
