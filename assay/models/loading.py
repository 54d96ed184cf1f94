"""load(spec): one spec names a model, ``organism:NAME`` or ``hf:PATH_OR_ID`` (a `ModelSpec`).

Checkpoints load as safetensors only unless the caller opts in to pickle, because a
pickle checkpoint can run arbitrary code when it is loaded. Remote code never runs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from assay.errors import AssayError
from assay.models.lm import LM
from assay.models.spec import ModelSpec, scheme

logger = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def api_cache() -> Path:
    """Where replies of api: models are cached: ``$ASSAY_API_CACHE``, else ``api-cache`` under
    ``$ASSAY_HOME`` (default ``~/.cache/assay``)."""
    if os.environ.get("ASSAY_API_CACHE"):
        return Path(os.environ["ASSAY_API_CACHE"]).expanduser()
    home = os.environ.get("ASSAY_HOME") or "~/.cache/assay"
    return Path(home).expanduser() / "api-cache"


def load(
    spec: str | ModelSpec,
    *,
    allow_pickle: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> LM:
    """Load the model that ``spec`` names, in eval mode.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` defaults to float32 on
    CPU and to the checkpoint's own dtype on a GPU.
    """
    spec = ModelSpec.parse(spec)
    if spec.is_api:  # black-box: only generate (assay.models.api)
        from assay.models.api import APIModel

        return APIModel.of(spec, cache_dir=api_cache())
    if spec.scheme != "hf":
        return scheme(spec).load(spec, allow_pickle=allow_pickle, device=device, dtype=dtype)
    if _looks_local(spec.name):
        folder = Path(spec.name).expanduser()
        _check_folder(folder, str(spec), allow_pickle)
        return load_folder(folder, str(spec), allow_pickle=allow_pickle, device=device, dtype=dtype)
    return load_folder(spec.name, str(spec), allow_pickle=allow_pickle, device=device, dtype=dtype)


def check_spec(spec: str | ModelSpec, *, allow_pickle: bool = False) -> str:
    """Validate ``spec`` without loading weights; returns a version key for content hashes.

    ``organism:NAME`` must name a known recipe (and stage): its scheme adds the recipe hash,
    so a changed recipe is a different model. ``hf:`` folders must hold loadable weights;
    a hub id must be in the local Hugging Face cache or on a hub that answers now.
    """
    spec = ModelSpec.parse(spec)
    if spec.is_api:  # the same name on another server is another model
        from assay.models.api import base_url

        return f"{spec}@{base_url()}"
    if spec.scheme != "hf":
        return scheme(spec).key(spec)
    if _looks_local(spec.name):
        _check_folder(Path(spec.name).expanduser(), str(spec), allow_pickle)
    else:
        _check_hub_id(spec)
    return str(spec)


HUB_TIMEOUT = 5.0  # seconds to wait for the hub when checking an id (one request, no retries)


def _check_hub_id(spec: ModelSpec) -> None:
    """Refuse, in one request, a hub id that is neither cached here nor reachable: loading
    it would otherwise spend a minute in HTTP retries inside the first unit that asks."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
    )

    repo = spec.name
    try:
        if isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return
    except (HFValidationError, ValueError):
        raise AssayError(f"{spec}: no such folder, and {repo!r} is not a hub id (owner/name); "
                         "give a local folder made by save_pretrained") from None
    fix = (f"download it where the hub is reachable (hf download {repo} --local-dir DIR) "
           "and pass hf:DIR")
    if constants.HF_HUB_OFFLINE:
        raise AssayError(f"{spec} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                         f"set: {fix}")
    try:
        get_hf_file_metadata(hf_hub_url(repo, "config.json"), timeout=HUB_TIMEOUT)
    except GatedRepoError:
        raise AssayError(f"{spec} is gated on the hub: accept its terms there and log in "
                         f"(hf auth login), or {fix}") from None
    except RepositoryNotFoundError:
        raise AssayError(f"{spec}: no model {repo!r} on the hub (or it is private: log in "
                         "with hf auth login); check the id") from None
    except EntryNotFoundError:
        raise AssayError(f"{spec} has no config.json on the hub: it is not a transformers "
                         "model; give a causal LM") from None
    except Exception as err:  # no network, DNS, proxy, TLS, time-out: all say the same
        why = f"{type(err).__name__}: {err}".splitlines()[0][:160]
        raise AssayError(f"{spec} is not cached here and the hub cannot be reached ({why}): "
                         f"{fix}, or set HF_ENDPOINT to a mirror") from None


def has_chat_template(spec: str | ModelSpec) -> bool | None:
    """Whether the model's tokenizer has a chat template, read from its files without loading
    the model; None when that cannot be told before loading (a hub id)."""
    spec = ModelSpec.parse(spec)
    if spec.is_api:
        return True  # api: models are reached through the chat API
    if spec.scheme != "hf":
        found = scheme(spec).chat
        return found(spec) if found is not None else None
    if not _looks_local(spec.name):
        return None
    return folder_has_chat_template(Path(spec.name).expanduser())


def folder_has_chat_template(folder: Path) -> bool:
    """True when a save_pretrained folder's tokenizer carries a chat template."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _looks_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def _check_folder(folder: Path, spec: str, allow_pickle: bool) -> None:
    """Refuse, with a reason, folders that are missing, incomplete or pickle-only."""
    if not folder.is_dir():
        raise AssayError(f"{spec}: no such folder; give a local folder made by save_pretrained or a hub id")
    if not (folder / "config.json").is_file():
        raise AssayError(
            f"{spec} has no config.json, so it is not a save_pretrained folder; "
            "save the model with model.save_pretrained(folder)"
        )
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    _check_weights(names, folder, spec, allow_pickle)
    if not any(n in TOKENIZER_FILES for n in names):
        raise AssayError(f"{spec} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save it "
                         "beside the model with tokenizer.save_pretrained(folder)")


def _check_weights(names: list[str], folder: Path, spec: str, allow_pickle: bool) -> None:
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        for n in names:
            if n.endswith(".safetensors"):
                _check_safetensors(folder / n, spec)
        return
    pickles = [n for n in names if n.endswith(_PICKLE_SUFFIXES) or n == "pytorch_model.bin.index.json"]
    if not pickles:
        raise AssayError(
            f"{spec} holds no weights (no *.safetensors); save the model with "
            "model.save_pretrained(folder)"
        )
    if not allow_pickle:
        raise AssayError(
            f"{spec} holds only pickle checkpoints ({', '.join(pickles)}), which can run code "
            "when loaded; convert them to safetensors (model.save_pretrained(folder, "
            "safe_serialization=True)), or in Python pass allow_pickle=True"
        )
    logger.warning("%s: loading pickle checkpoints (%s) because allow_pickle=True", spec, ", ".join(pickles))


def _check_safetensors(path: Path, spec: str) -> None:
    """Refuse a safetensors file whose header is unreadable or whose data is cut short, by
    reading its header only (a truncated download or copy is caught before any work)."""
    fix = "save the model again with model.save_pretrained(folder)"
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length > size - 8:
                raise ValueError("header length beyond the end of the file")
            header = json.loads(f.read(length))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise AssayError(f"{spec}: {path.name} is not a readable safetensors file ({err}); "
                         f"{fix}") from None
    if 8 + length + end > size:
        raise AssayError(f"{spec}: {path.name} is truncated ({size:,} bytes where its header "
                         f"describes {8 + length + end:,}); {fix}")


def _resolve(device, dtype) -> tuple[torch.device, torch.dtype | str]:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else "auto"
    elif isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise AssayError(f"unknown dtype '{dtype}'; use e.g. float32, bfloat16, float16 or auto")
        dtype = resolved
    return device, dtype


def load_folder(name: str | Path, spec: str, *, allow_pickle: bool = False, device=None,
                dtype=None) -> LM:
    """The causal LM and tokenizer saved in folder (or hub id) ``name``, labelled ``spec``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = _resolve(device, dtype)
    kwargs = dict(trust_remote_code=False, dtype=dtype, use_safetensors=None if allow_pickle else True)
    if device.type != "cpu":
        kwargs["device_map"] = str(device)
    name = str(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as e:  # transformers raises many types; the user needs one message
        raise AssayError(
            f"{spec}: could not load the model ({type(e).__name__}: {_first_line(e)}); check that "
            "it is a causal LM saved with save_pretrained (safetensors, not corrupt) or a reachable hub id"
        ) from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as e:
        raise AssayError(
            f"{spec}: could not load the tokenizer ({type(e).__name__}: {_first_line(e)}); "
            "save it next to the model with tokenizer.save_pretrained(folder)"
        ) from e
    model.to(device)
    model.eval()
    logger.info("loaded %s: %s on %s", spec, type(model).__name__, device)
    return LM(model, tokenizer, spec=spec)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"
