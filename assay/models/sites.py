"""Named activation sites, one spelling for every model, and the hooks that read and write them.

Sites (TransformerLens names, mapped onto the Hugging Face modules, not reimplemented):

- ``embed``: hidden states entering block 0 (token embeddings, plus position
  embeddings for gpt2 / after any embedding scaling);
- ``blocks.{i}.resid_pre``: hidden states entering block ``i``;
- ``blocks.{i}.attn_out``: output of block ``i``'s attention module;
- ``blocks.{i}.mlp_out``: output of block ``i``'s MLP module;
- ``blocks.{i}.resid_post``: hidden states leaving block ``i``;
- ``final``: output of the final norm (what the unembedding sees).

A write replaces the activation; a read on the same site sees the written value.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from assay.errors import AssayError

logger = logging.getLogger(__name__)

KINDS = ("resid_pre", "attn_out", "mlp_out", "resid_post")
SITES_HELP = "sites are embed, blocks.{i}.resid_pre|resid_post|attn_out|mlp_out, final"

WriteFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass(frozen=True)
class Arch:
    """Where one architecture keeps its blocks, relative to the causal LM module."""

    layers: str  # dotted path of the ModuleList of blocks
    attn: str  # attribute of a block holding the attention module
    mlp: str  # attribute of a block holding the MLP module
    final: str  # dotted path of the final norm


_LLAMA = Arch(layers="model.layers", attn="self_attn", mlp="mlp", final="model.norm")

# Keyed by config.model_type. Llama-shaped families share one entry.
ARCHS: dict[str, Arch] = {
    "llama": _LLAMA,
    "qwen2": _LLAMA,
    "mistral": _LLAMA,
    "gpt2": Arch(layers="transformer.h", attn="attn", mlp="mlp", final="transformer.ln_f"),
    "gpt_neox": Arch(
        layers="gpt_neox.layers", attn="attention", mlp="mlp", final="gpt_neox.final_layer_norm"
    ),
}


def _find(model: nn.Module, path: str) -> nn.Module | None:
    """The submodule at ``path``, or the one module whose name ends with ``.path`` (wrappers)."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        pass
    hits = [m for name, m in model.named_modules() if name.endswith("." + path)]
    return hits[0] if len(hits) == 1 else None


class SiteMap:
    """Resolves canonical site names onto one model's modules."""

    def __init__(self, model: nn.Module) -> None:
        model_type = getattr(model.config, "model_type", "?")
        candidates = [ARCHS[model_type]] if model_type in ARCHS else list(dict.fromkeys(ARCHS.values()))
        for arch in candidates:
            layers = _find(model, arch.layers)
            final = _find(model, arch.final)
            if isinstance(layers, nn.ModuleList) and len(layers) and final is not None:
                if all(hasattr(b, arch.attn) and hasattr(b, arch.mlp) for b in layers):
                    break
        else:
            raise AssayError(
                f"no activation-site table for model_type '{model_type}': its modules do not match "
                f"any known layout ({', '.join(sorted(ARCHS))}); add an Arch entry to "
                "assay.models.sites.ARCHS"
            )
        if model_type not in ARCHS:
            logger.info("model_type %r not in the site table; using the layout %s", model_type, arch)
        self.arch = arch
        self.layers: list[nn.Module] = list(layers)
        self.final: nn.Module = final

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        blocks = [f"blocks.{i}.{k}" for i in range(self.n_layers) for k in KINDS]
        return ["embed", *blocks, "final"]

    def parse(self, site: str) -> tuple[str, int | None]:
        """``(kind, layer)`` for a site name, or an AssayError that lists the valid ones."""
        if site in ("embed", "final"):
            return site, None
        m = re.fullmatch(r"blocks\.(\d+)\.(\w+)", site)
        if m and m.group(2) in KINDS and int(m.group(1)) < self.n_layers:
            return m.group(2), int(m.group(1))
        n = self.n_layers
        raise AssayError(
            f"unknown site '{site}': model has {n} layers (blocks.0-{n - 1}); {SITES_HELP}"
        )

    def target(self, site: str) -> tuple[nn.Module, bool]:
        """The module to hook for ``site`` and whether it is a pre-hook (its input)."""
        kind, i = self.parse(site)
        if kind == "embed":
            return self.layers[0], True
        if kind == "final":
            return self.final, False
        block = self.layers[i]
        if kind == "resid_pre":
            return block, True
        if kind == "resid_post":
            return block, False
        return getattr(block, self.arch.attn if kind == "attn_out" else self.arch.mlp), False


class ActivationCache:
    """Activations read inside a ``hooks`` block: ``cache[site]`` is the latest pass, (B, T, D)."""

    def __init__(self) -> None:
        self._store: dict[str, list[torch.Tensor]] = {}

    def _add(self, site: str, x: torch.Tensor) -> None:
        self._store.setdefault(site, []).append(x)

    def __getitem__(self, site: str) -> torch.Tensor:
        return self.all(site)[-1]

    def all(self, site: str) -> list[torch.Tensor]:
        """Every forward pass's activation at ``site``, oldest first."""
        if site not in self._store:
            raise AssayError(
                f"no activation cached for '{site}': read it with lm.hooks(read=[...]) and run a "
                f"forward pass inside the block (cached: {', '.join(self._store) or 'nothing'})"
            )
        return self._store[site]

    def __contains__(self, site: object) -> bool:
        return site in self._store

    def keys(self) -> list[str]:
        return list(self._store)

    def clear(self) -> None:
        self._store.clear()


def _transform(site: str, read: bool, write: WriteFn | None, cache: ActivationCache):
    """The function a hook applies to the activation: write, then read what was written."""

    def apply(h: torch.Tensor) -> torch.Tensor:
        out = h
        if write is not None:
            new = write(h)
            if new is not None:
                if new.shape != h.shape:
                    raise AssayError(
                        f"write to '{site}' returned shape {tuple(new.shape)}, expected "
                        f"{tuple(h.shape)}; return a tensor of the same shape, or None"
                    )
                out = new
        if read:
            cache._add(site, out.detach().clone())
        return out

    return apply


def _pre_hook(apply):
    def hook(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        new = apply(h)
        if new is h:
            return None
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def _post_hook(apply):
    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        new = apply(h)
        if new is h:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@contextlib.contextmanager
def attach(
    sites: SiteMap,
    read: Iterable[str] = (),
    write: Mapping[str, WriteFn] | None = None,
) -> Iterator[ActivationCache]:
    """Register read/write hooks for the block's duration; always removed, even on error."""
    read_set, write = set(read), dict(write or {})
    for site in (*read_set, *write):
        sites.parse(site)
    cache = ActivationCache()
    handles = []
    try:
        # Canonical order, so on a shared module (embed and blocks.0.resid_pre) earlier sites run first.
        for site in sites.names:
            if site not in read_set and site not in write:
                continue
            module, pre = sites.target(site)
            apply = _transform(site, site in read_set, write.get(site), cache)
            if pre:
                handles.append(module.register_forward_pre_hook(_pre_hook(apply), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(_post_hook(apply)))
        yield cache
    finally:
        for handle in handles:
            handle.remove()
