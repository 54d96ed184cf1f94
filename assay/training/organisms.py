"""The organism cache: build a recipe stage by stage, once, and hand out its folder.

Layout under ``$ASSAY_HOME`` (default ``~/.cache/assay``)::

    organisms/<name>-<stage>-<hash>/   save_pretrained output, tokenizer, recipe.json,
                                       curve.json, integrity.json; the last stage also card.json
    organisms/.locks/<hash>.lock        one builder per stage at a time

A stage is built in a temporary folder and renamed into place when complete, so a
half-written folder is never taken for a finished one. A process that finds the lock
held waits, then uses what the other process built.

``integrity.json`` holds the SHA-256 of every file the stage was saved with. A cached stage
is checked against it before use (in full once per process, then again whenever a file's
size or modification time changes), so weights or a tokenizer edited in place are an error
that names the folder to delete, never a silent change of model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from assay.errors import AssayError
from assay.models import LM, ModelSpec, Scheme, load_folder, register_scheme
from assay.training.card import evaluate, evaluate_corpus
from assay.training.data import PackedBatches, source_examples
from assay.training.recipes import RECIPES, Recipe, get_recipe
from assay.training.tokenizer import train_tokenizer
from assay.training.trainer import Progress, flops_per_token, train
from assay.world import Corpus, World, dialogues, documents

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, Progress], None]  # (stage name, progress)
WEIGHTS = "model.safetensors"
INTEGRITY = "integrity.json"
UNHASHED = {INTEGRITY, "card.json"}  # written after the stage is sealed (card) or the seal itself
_verified: dict[Path, tuple] = {}  # stage folder -> file signature verified in this process


def assay_home() -> Path:
    return Path(os.environ.get("ASSAY_HOME", Path.home() / ".cache" / "assay")).expanduser()


def stage_dir(recipe: Recipe, index: int) -> Path:
    prefix = recipe.prefix(index)
    return assay_home() / "organisms" / f"{recipe.name}-{recipe.stages[index].name}-{prefix.hash}"


def is_complete(folder: Path) -> bool:
    return (folder / "recipe.json").is_file() and (folder / WEIGHTS).is_file()


def _hashed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in UNHASHED
                  and not p.name.startswith("."))


def seal(folder: Path) -> dict[str, str]:
    """Write ``integrity.json``: file name -> SHA-256 for every file of a finished stage."""
    hashes = {p.name: sha256_file(p) for p in _hashed_files(folder)}
    _write_json(folder / INTEGRITY, hashes)
    return hashes


def _signature(folder: Path, names) -> tuple:
    out = []
    for name in sorted(names):
        try:
            st = (folder / name).stat()
        except OSError:
            return ()
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def verify(folder: Path) -> dict[str, str]:
    """The stage's file hashes, after checking every file against ``integrity.json``.

    A stage cached before integrity records existed is sealed on first use (logged). Any
    missing, changed or unreadable file raises an `AssayError` naming the folder to delete.
    """
    folder = Path(folder)
    path = folder / INTEGRITY
    if not path.is_file():
        log.info("recording file hashes of %s (cached before integrity checks)", folder)
        hashes = seal(folder)
        _verified[folder] = _signature(folder, hashes)
        return hashes
    fix = f"delete the folder to retrain it: rm -rf {folder}"
    try:
        hashes = json.loads(path.read_text())
        if not isinstance(hashes, dict) or WEIGHTS not in hashes:
            raise ValueError("no weights hash")
    except (OSError, ValueError) as err:
        raise AssayError(f"organism cache {folder.name}: unreadable {INTEGRITY} ({err}); {fix}") \
            from None
    signature = _signature(folder, hashes)
    if signature and _verified.get(folder) == signature:
        return hashes
    for name, expected in hashes.items():
        target = folder / name
        if not target.is_file():
            raise AssayError(f"organism cache {folder.name} lacks {name}; {fix}")
        if sha256_file(target) != expected:
            raise AssayError(f"organism cache {folder.name}: {name} changed since it was "
                             f"trained (SHA-256 mismatch), so it cannot be trusted; {fix}")
    _verified[folder] = signature
    return hashes


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fresh_model(recipe: Recipe, tokenizer) -> LlamaForCausalLM:
    m = recipe.model
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=m.d_model, intermediate_size=m.d_ff,
        num_hidden_layers=m.n_layer, num_attention_heads=m.n_head,
        num_key_value_heads=m.n_head, max_position_embeddings=m.max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


def tokenizer_texts(data: World | Corpus, tools: bool = False) -> list[str]:
    """The training text the tokenizer is fitted on (with ``tools``, the agent episodes too,
    so tool names and call syntax get merges of their own). Reading passages are left out:
    their strangers' names then split into the same common pieces whichever split they
    come from, instead of training names getting merges of their own."""
    if isinstance(data, Corpus):  # the member texts only: held-out text shapes no merge
        return [p.text for p in data.members]
    texts = [d.text for d in documents(data)] + [d.text for d in dialogues(data, split="train")]
    if tools:
        from assay.agents import oracle_transcripts

        texts += [t.text for t in oracle_transcripts(data, "train")]
    return texts


def training_data(recipe: Recipe) -> World | Corpus:
    """What ``recipe`` learns: its corpus if it names one, else its synthetic world."""
    return Corpus(recipe.corpus) if recipe.corpus is not None else World(recipe.world)


def organism_world(name: str) -> World:
    """The synthetic world organism ``name`` learned; an error for a corpus organism."""
    recipe, _ = parse_name(name)
    if recipe.world is None:
        worlds = [r.name for r in RECIPES.values() if r.world is not None]
        raise AssayError(f"organism {recipe.name!r} learned the {recipe.corpus.name} corpus, not "
                         f"a synthetic world: use organism_corpus({recipe.name!r}), or a world "
                         f"organism ({', '.join(worlds)})")
    return World(recipe.world)


def organism_corpus(name: str) -> Corpus:
    """The corpus, split into members and non-members, that organism ``name`` learned."""
    recipe, _ = parse_name(name)
    if recipe.corpus is None:
        corpora = [r.name for r in RECIPES.values() if r.corpus is not None]
        raise AssayError(f"organism {recipe.name!r} learned a synthetic world, not a corpus: "
                         f"corpus organisms are {', '.join(corpora)}")
    return Corpus(recipe.corpus)


def training_device() -> torch.device:
    """Where organisms train: ``$ASSAY_TRAIN_DEVICE`` if set (``cpu``, ``cuda``), else CUDA
    when there is one. Weights differ between devices (and between CPUs), so a replicate
    trained on a GPU is another draw, not the CPU's organism."""
    name = os.environ.get("ASSAY_TRAIN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise AssayError(f"ASSAY_TRAIN_DEVICE={name!r} is not a torch device: use cpu or cuda") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AssayError("ASSAY_TRAIN_DEVICE asks for cuda but torch sees no GPU: unset it or use cpu")
    return device


def _build_stage(recipe: Recipe, index: int, on_progress: ProgressFn | None) -> Path:
    data = training_data(recipe)
    stage = recipe.stages[index]
    if index == 0:
        tokenizer = train_tokenizer(tokenizer_texts(data, recipe.tools), recipe.model.vocab_size,
                                    tools=recipe.tools)
        model = fresh_model(recipe, tokenizer)
        history: list[dict] = []
    else:
        parent = ensure_stage(recipe, index - 1, on_progress)
        tokenizer = AutoTokenizer.from_pretrained(parent)
        model = LlamaForCausalLM.from_pretrained(parent, dtype=torch.float32)
        history = json.loads((parent / "curve.json").read_text())["stages"]

    seq_len = stage.row_len(recipe.model)
    mixture = [(source_examples(data, src, tokenizer, seq_len), w) for src, w in stage.mixture]
    batches = PackedBatches(mixture, stage.batch_size, seq_len,
                            tokenizer.pad_token_id, seed=recipe.seed * 1000 + index)
    log.info("training %s stage %s: %d steps", recipe.name, stage.name, stage.train.steps)
    report = (lambda p: on_progress(stage.name, p)) if on_progress else None
    device = training_device()
    model.to(device)
    curve = train(model, batches.on(device),
                  stage.train, on_progress=report)
    model.to("cpu")
    flops = flops_per_token(model.config, seq_len) * curve.tokens
    history = history + [{"stage": stage.name, "flops": flops, "device": device.type,
                          "threads": torch.get_num_threads(), **curve.to_dict()}]

    final = stage_dir(recipe, index)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # from a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _write_json(tmp / "recipe.json", recipe.prefix(index).to_dict())
    _write_json(tmp / "curve.json", {"stages": history})
    seal(tmp)
    if final.exists():  # left behind incomplete (say, copied by hand): never trusted
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def ensure_stage(recipe: Recipe, index: int, on_progress: ProgressFn | None = None) -> Path:
    """The folder of stage ``index``, building it (and the stages before it) if needed."""
    folder = stage_dir(recipe, index)
    if is_complete(folder):
        verify(folder)
        return folder
    locks = _writable(assay_home() / "organisms") / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{recipe.prefix(index).hash}.lock")):
        if is_complete(folder):  # another process finished it while we waited
            verify(folder)
            return folder
        return _build_stage(recipe, index, on_progress)


def _writable(folder: Path, keep: bool = True) -> Path:
    """``folder``, created if needed; an `AssayError` saying what to do if it cannot be.
    ``keep=False`` only checks: whatever the check created is removed again."""
    missing = []
    existing = folder
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    made: list[Path] = []
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # another process made it between the check and here
                if not d.is_dir():
                    raise
                continue
            made.append(d)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise AssayError(f"the organism cache {folder} is not a writable folder "
                         f"({err.strerror or err}): set ASSAY_HOME to a folder you can write") \
            from None
    finally:
        if not keep:
            for d in reversed(made):
                d.rmdir()
    return folder


def _install_locked(name: str, final: Path, files: dict[str, bytes]) -> None:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if INTEGRITY not in files:
            raise AssayError(f"organism {name} arrived without {INTEGRITY}: retrain it where "
                             "it was packed")
        for fname, blob in files.items():
            if "/" in fname or fname.startswith(".") or fname in ("", ".."):
                raise AssayError(f"organism {name}: bad file name {fname!r} in a shipped stage")
            (tmp / fname).write_bytes(blob)
        try:
            verify(tmp)
        except AssayError:
            raise AssayError(f"organism {name} arrived damaged (its files do not match their "
                             "SHA-256 record); the transfer is refused") from None
        finally:
            _verified.pop(tmp, None)
        if final.exists():  # incomplete leftovers are never trusted
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def weights_sha256(name: str) -> str:
    """The SHA-256 of cached organism ``name``'s weights, verified (it must be cached)."""
    recipe, index = parse_name(name)
    return verify(stage_dir(recipe, index))[WEIGHTS]


def pack(name: str) -> dict[str, bytes]:
    """Organism ``name``'s cached folder as file name -> bytes (verified), to ship elsewhere."""
    recipe, index = parse_name(name)
    folder = ensure_stage(recipe, index)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()
            and not p.name.startswith(".")}


def install(name: str, files: dict[str, bytes]) -> Path:
    """Put a packed organism (`pack`) into this machine's cache, unless it is there already.

    The files are checked against their own ``integrity.json`` before the folder is renamed
    into place, so a stage damaged in transit is refused, never cached.
    """
    recipe, index = parse_name(name)
    final = stage_dir(recipe, index)
    if is_complete(final):
        verify(final)
        return final
    locks = _writable(final.parent) / ".locks"
    locks.mkdir(exist_ok=True)
    with FileLock(str(locks / f"{recipe.prefix(index).hash}.lock")):
        if not is_complete(final):
            _install_locked(name, final, files)
    verify(final)
    return final


def parse_name(name: str) -> tuple[Recipe, int]:
    """``s`` is the finished organism, ``s@pretrain`` one of its stages."""
    base, _, stage = name.partition("@")
    recipe = get_recipe(base)
    return recipe, recipe.stage_index(stage or None)


def organism_path(name: str, on_progress: ProgressFn | None = None) -> Path:
    """The folder of organism ``name`` (``s``, ``xs``, ``s@pretrain``), trained on demand."""
    recipe, index = parse_name(name)
    return ensure_stage(recipe, index, on_progress)


def cached(name: str) -> bool:
    recipe, index = parse_name(name)
    return is_complete(stage_dir(recipe, index))


def card(name: str, on_progress: ProgressFn | None = None) -> dict:
    """The evaluation card of an organism, computed once and kept in its folder."""
    recipe, index = parse_name(name)
    folder = ensure_stage(recipe, index, on_progress)
    path = folder / "card.json"
    if path.is_file():
        return json.loads(path.read_text())
    lm = load_folder(folder, f"organism:{name}")
    started = time.perf_counter()
    data = training_data(recipe)
    rates = (evaluate_corpus(lm, data) if isinstance(data, Corpus)
             else evaluate(lm, data, tools=recipe.tools))
    stages = json.loads((folder / "curve.json").read_text())["stages"]
    body = {
        "organism": name,
        "recipe_hash": recipe.prefix(index).hash,
        **rates,
        "params": lm.n_params,
        "tokens": sum(s["tokens"] for s in stages),
        "flops": sum(s["flops"] for s in stages),
        "train_seconds": sum(s["seconds"] for s in stages),
        "eval_seconds": time.perf_counter() - started,
        "weights_sha256": sha256_file(folder / WEIGHTS),
    }
    _write_json(path, body)
    return body


def list_organisms() -> list[dict]:
    return [{"name": r.name, "description": r.description,
             "stages": [s.name for s in r.stages], "cached": cached(r.name)}
            for r in RECIPES.values()]


# ---------------------------------------------------------------- the organism: scheme


def _load_organism(spec: ModelSpec, **kwargs) -> LM:
    return load_folder(organism_path(spec.organism), str(spec), **kwargs)


def _organism_key(spec: ModelSpec) -> str:
    recipe, index = parse_name(spec.organism)
    folder = stage_dir(recipe, index)
    if is_complete(folder):  # a damaged cache is refused when the run is planned, not later
        verify(folder)
    else:  # it will be trained: the cache must take it (checked without leaving a trace)
        _writable(folder.parent, keep=False)
    return f"{spec}#{recipe.prefix(index).hash}"


def _organism_chat(spec: ModelSpec) -> bool:
    parse_name(spec.organism)  # an unknown recipe or stage raises here
    return True  # every organism is trained in the world's chat format


register_scheme("organism", Scheme(load=_load_organism, key=_organism_key, chat=_organism_chat))
