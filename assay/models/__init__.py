"""One wrapper over a causal LM: scoring, generation, activation sites, embedding gradients.

``load("organism:NAME" | "hf:PATH_OR_ID")`` returns an :class:`LM`.
"""

from assay.models.lm import LM, Score
from assay.models.loading import check_spec, load
from assay.models.sites import ARCHS, ActivationCache, Arch

__all__ = ["ARCHS", "LM", "ActivationCache", "Arch", "Score", "check_spec", "load"]
