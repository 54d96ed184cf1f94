"""`ModelSpec`: the one parsed form of a model spec string, and the schemes that load them.

``organism:NAME[@STAGE]`` names an organism recipe (and one of its training stages); a NAME
of the form ``RECIPE~K`` is a replicate, the recipe trained with seed K (`assay.training`);
``hf:PATH_OR_ID`` a Hugging Face causal LM in a local folder or on a hub; ``api:NAME`` a
model behind an OpenAI-compatible HTTP API (`assay.models.api`), black-box: NAME is the id
the server knows it by, and an id that is itself an organism spec (``api:organism:s``, as
`assay serve` names what it serves) tells studies which world the model was trained on. The string is
parsed once, where it enters (the CLI, `plan`), and the value is carried from there on.

The ``hf`` scheme is built in; ``organism`` is registered by `assay.training`, which sits
above this layer (importing `assay.training` registers it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assay.errors import AssayError

if TYPE_CHECKING:
    from assay.models.lm import LM

__all__ = ["SCHEMES", "ModelSpec", "Scheme", "register_scheme", "scheme"]

SCHEMES = ("organism:NAME", "hf:PATH_OR_ID", "api:NAME")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``scheme`` (organism or hf), ``name`` and, for organisms, the
    training ``stage`` (None: the finished organism). ``str(spec)`` gives the spec back."""

    scheme: str
    name: str
    stage: str | None = None

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """``"organism:s@pretrain"`` -> ModelSpec("organism", "s", "pretrain"); an unknown
        scheme or an empty name raises AssayError naming the valid forms."""
        if isinstance(text, ModelSpec):
            return text
        kind, sep, rest = str(text).partition(":")
        if not sep or kind not in ("organism", "hf", "api") or not rest:
            raise AssayError(f"unknown model spec '{text}': give one of {', '.join(SCHEMES)} "
                             "(e.g. organism:s, hf:/path/to/folder or api:gpt-4o-mini)")
        if kind == "api" and rest.startswith("organism:"):
            cls.parse(rest)  # a served organism's name must be a valid organism spec
        if kind == "organism":
            name, at, stage = rest.partition("@")
            if not name or (at and not stage):
                raise AssayError(f"bad organism spec '{text}': write organism:NAME or "
                                 "organism:NAME@STAGE, e.g. organism:s@pretrain")
            return cls(kind, name, stage or None)
        return cls(kind, rest)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}" + (f"@{self.stage}" if self.stage else "")

    @property
    def is_organism(self) -> bool:
        return self.scheme == "organism"

    @property
    def is_api(self) -> bool:
        return self.scheme == "api"

    @property
    def served(self) -> ModelSpec | None:
        """For ``api:organism:NAME``, the organism the server serves (its world is known from
        the recipe); None for any other spec."""
        if self.is_api and self.name.startswith("organism:"):
            return ModelSpec.parse(self.name)
        return None

    @property
    def organism(self) -> str:
        """The organism name with its stage (``s@pretrain``), as the organism cache takes it;
        for ``api:organism:NAME``, the served organism's."""
        if self.served is not None:
            return self.served.organism
        if not self.is_organism:
            raise AssayError(f"{self} is not an organism: give organism:NAME")
        return self.name + (f"@{self.stage}" if self.stage else "")


@dataclass(frozen=True)
class Scheme:
    """How one scheme loads: ``load(spec, **kwargs) -> LM`` and ``key(spec) -> str`` (a
    version key for content hashes, checking the spec without loading weights)."""

    load: Callable[..., LM]
    key: Callable[[ModelSpec], str]
    chat: Callable[[ModelSpec], bool] | None = None  # has a chat template, read without loading


_SCHEMES: dict[str, Scheme] = {}


def register_scheme(name: str, scheme_: Scheme) -> None:
    """Make ``name:`` specs load through ``scheme_`` (a later registration replaces one)."""
    _SCHEMES[name] = scheme_


def scheme(spec: ModelSpec) -> Scheme:
    """The registered scheme of ``spec``; an error that says how to register it otherwise."""
    found = _SCHEMES.get(spec.scheme)
    if found is None:
        if spec.scheme == "organism":
            raise AssayError(f"{spec}: the organism: scheme is registered by assay.training; "
                             "import assay.training before loading organisms")
        raise AssayError(f"{spec}: no loader is registered for the {spec.scheme}: scheme")
    return found


