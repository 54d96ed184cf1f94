"""One wrapper over a causal LM: scoring, generation, activation sites, embedding gradients.

``load("organism:NAME" | "hf:PATH_OR_ID")`` returns an :class:`LM`; `ModelSpec` is the parsed
spec (the ``organism:`` scheme is registered by `assay.training`).
"""

from assay.models.lm import LM, Score
from assay.models.loading import check_spec, has_chat_template, load, load_folder
from assay.models.sites import ARCHS, ActivationCache, Arch
from assay.models.spec import SCHEMES, ModelSpec, Scheme, register_scheme

__all__ = ["ARCHS", "LM", "SCHEMES", "ActivationCache", "Arch", "ModelSpec", "Scheme", "Score",
           "check_spec", "has_chat_template", "load", "load_folder", "register_scheme"]
