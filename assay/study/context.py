"""What a study's run() receives besides its config: seed, models, worlds, artifact folder.

Models and worlds load lazily and once per context; every organism used is recorded with its
recipe hash so the runner can put it in the provenance.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assay.errors import AssayError
from assay.models.spec import ModelSpec

if TYPE_CHECKING:
    from assay.models import LM
    from assay.world import World

__all__ = ["Context"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float], None]  # (message, fraction done in [0, 1])


class Context:
    """One unit's environment: ``Context(seed, artifacts, model="organism:s", progress=None)``.

    ``model`` is the unit's parsed `ModelSpec`; `lm` loads it, `organism` loads any other
    organism (a retain-only control, an earlier stage), `world` builds an organism's world and
    `recipe` names the unit's organism recipe.

    ``organisms`` lists the organisms the unit may load (the study's declaration,
    `StudySpec.organisms`); None allows any. Loading another is an error that names the fix.

    ``fetch`` (class-wide) is how a worker without a shared organism cache gets one: called
    with an organism name, it returns the packed stage (`assay.training.organisms.pack`) from
    wherever the organism was trained; None trains missing organisms here.
    """

    fetch: Callable[[str], dict[str, bytes]] | None = None

    def __init__(self, seed: int, artifacts: str | Path, model: str | ModelSpec = "organism:s",
                 progress: ProgressFn | None = None, organisms: list[str] | None = None) -> None:
        self.seed = int(seed)
        self.artifacts = Path(artifacts)
        self.model = ModelSpec.parse(model)
        self.progress = progress
        self.rng: np.random.Generator = np.random.default_rng(self.seed)
        self.organisms: dict[str, str] = {}  # organism name -> recipe hash, for provenance
        self.weights: dict[str, str] = {}  # organism name -> SHA-256 of the weights it loaded
        self.flops = 0.0  # compute the study reports spending (add_flops), for provenance
        self.declared = organisms  # the organisms it may load; None: any
        self._lms: dict[str, LM] = {}
        self._worlds: dict[str, World] = {}

    def __repr__(self) -> str:
        return f"Context(seed={self.seed}, model='{self.model}', artifacts='{self.artifacts}')"

    def torch_seed(self) -> int:
        """Seed torch (CPU and CUDA) with this context's seed; returns the seed."""
        import torch

        torch.manual_seed(self.seed)
        return self.seed

    @property
    def recipe(self) -> str:
        """The organism recipe this unit runs on (``s`` for ``organism:s@pretrain``). Studies
        that use it declare ``Needs(organism=True)``, which `plan` checks before any work."""
        if self.model.served is not None:  # api:organism:NAME
            return self.model.served.name
        if not self.model.is_organism:
            raise AssayError(f"this study needs an organism model (organism:s), not {self.model}: "
                             "declare Needs(organism=True) so plan refuses it up front")
        return self.model.name

    def world(self, name: str | None = None) -> World:
        """The synthetic world of organism recipe ``name`` (default: the unit's organism, or
        ``s`` for a model that is not an organism), built once per context."""
        own = self.model.served or self.model
        name = name or (own.name if own.is_organism else "s")
        if name not in self._worlds:
            from assay.training.organisms import organism_world

            self._worlds[name] = organism_world(name)
        return self._worlds[name]

    def organism(self, name: str) -> LM:
        """Organism ``name`` (``s``, ``xs``, ``s@pretrain``), trained on demand, loaded once.
        When the unit's model is an organism behind an API (``api:organism:NAME``), the
        others it loads are asked for at the same server (``api:organism:OTHER``)."""
        spec = ModelSpec.parse(f"organism:{name}")
        key = str(spec)
        if self.model.is_api and key not in self._lms:
            from assay.models import load

            self._check_declared(name, _recipe_hash(name))
            self._lms[key] = load(f"api:{spec}")
            self.organisms[name] = _recipe_hash(name)
        if key not in self._lms:
            from assay.models import load
            from assay.training.organisms import cached, install, organism_path, parse_name, weights_sha256

            recipe, index = parse_name(name)
            self._check_declared(name, recipe.prefix(index).hash)
            if not cached(name) and Context.fetch is not None:
                self.report(f"fetching organism {name}", 0.0)
                install(name, Context.fetch(name))
            if not cached(name):  # training takes minutes: show it as this unit's progress
                organism_path(name, lambda stage, p: self.report(
                    f"training organism {name}: {stage} step {p.step}/{p.steps}",
                    p.step / p.steps))
            self._lms[key] = load(spec)
            self.organisms[name] = recipe.prefix(index).hash
            self.weights[name] = weights_sha256(name)
        return self._lms[key]

    def _check_declared(self, name: str, recipe_hash: str) -> None:
        if self.declared is None:
            return
        from assay.training.organisms import parse_name

        hashes = set()
        for other in self.declared:
            r, i = parse_name(other)
            hashes.add(r.prefix(i).hash)
        if recipe_hash not in hashes:
            listed = ", ".join(self.declared) or "none"
            raise AssayError(f"the study loads organism {name}, which it does not declare "
                             f"(declared: {listed}): add it to @study(organisms=...) so a run "
                             "can plan its training")

    def lm(self) -> LM:
        """The model this unit runs on (``self.model``), loaded once."""
        if self.model.served is not None:
            return self.organism(self.model.organism)
        if self.model.is_organism:
            return self.organism(self.model.organism)
        key = str(self.model)
        if key not in self._lms:
            from assay.models import load

            self._lms[key] = load(self.model)
        return self._lms[key]

    def artifact(self, name: str) -> Path:
        """A path for file ``name`` inside this unit's artifact folder (created if missing)."""
        seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
        if not name or name in (".", "..") or ".." in name or any(s in name for s in seps):
            raise AssayError(f"bad artifact name {name!r}: give a plain file name such as "
                             "'curve.png', without path separators or '..'")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts / name

    def add_flops(self, flops: float) -> None:
        """Count compute spent (e.g. a finetune's tokens x FLOPs per token) into provenance."""
        self.flops += float(flops)

    def report(self, message: str, fraction: float) -> None:
        """Tell the runner how far the study has got; fraction in [0, 1]."""
        log.debug("%s (%.0f%%)", message, 100 * fraction)
        if self.progress is not None:
            self.progress(message, min(1.0, max(0.0, float(fraction))))


def _recipe_hash(name: str) -> str:
    from assay.training.organisms import parse_name

    recipe, index = parse_name(name)
    return recipe.prefix(index).hash
