"""One wrapper over a causal LM: scoring, generation, activation sites, embedding gradients.

``load("organism:NAME" | "hf:PATH_OR_ID")`` returns an :class:`LM`; `ModelSpec` is the parsed
spec (the ``organism:`` scheme is registered by `assay.training`).

Names are imported on first use, so code that only parses model specs (planning, reading a
store) does not import torch.
"""

from importlib import import_module

from assay.models.spec import SCHEMES, ModelSpec, Scheme, register_scheme

_LAZY = {"LM": "lm", "Score": "lm", "check_spec": "loading", "has_chat_template": "loading",
         "load": "loading", "load_folder": "loading", "ARCHS": "sites",
         "ActivationCache": "sites", "Arch": "sites"}

__all__ = ["ARCHS", "LM", "SCHEMES", "ActivationCache", "Arch", "ModelSpec", "Scheme", "Score",
           "check_spec", "has_chat_template", "load", "load_folder", "register_scheme"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"assay.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'assay.models' has no attribute {name!r}")
