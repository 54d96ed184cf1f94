"""The organism cache is verified before use: edited weights or tokenizers are refused with the
folder to delete, stages ship between caches only intact, and provenance names the weights."""

import json
import os

import pytest

from assay.errors import AssayError
from assay.training import organisms
from assay.training.recipes import RECIPES, Architecture, Recipe, Stage
from assay.training.trainer import TrainConfig
from assay.world import WorldConfig

TINY = Recipe(
    name="tiny", description="plumbing only", world=WorldConfig.preset("xs"),
    model=Architecture(d_model=32, n_layer=1, n_head=2, d_ff=64, seq_len=64, vocab_size=400),
    stages=(Stage("pretrain", (("documents", 1.0),), TrainConfig(steps=6, warmup=2), 8),),
)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A freshly trained tiny organism in its own cache; returns its folder."""
    monkeypatch.setitem(RECIPES, "tiny", TINY)
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    organisms._verified.clear()
    return organisms.organism_path("tiny")


def _touch_later(path):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_every_file_is_sealed_and_a_clean_cache_verifies(tiny):
    hashes = json.loads((tiny / organisms.INTEGRITY).read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json", "recipe.json"} <= set(hashes)
    assert hashes["model.safetensors"] == organisms.sha256_file(tiny / "model.safetensors")
    assert organisms.weights_sha256("tiny") == hashes["model.safetensors"]


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_a_file_changed_in_place_is_refused_with_the_folder_to_delete(tiny, name):
    organisms.verify(tiny)  # seen intact in this process first: the change must still be caught
    path = tiny / name
    size = path.stat().st_size
    with open(path, "r+b") as f:  # same size, other bytes: what zeroing weights in place does
        f.seek(size // 2)
        f.write(b"\0" * 64)
    _touch_later(path)
    with pytest.raises(AssayError, match=f"{name} changed since it was trained.*rm -rf {tiny}"):
        organisms.organism_path("tiny")
    from assay.models import check_spec

    with pytest.raises(AssayError, match="changed since it was trained"):
        check_spec("organism:tiny")  # so `assay run` refuses it while planning


def test_a_missing_file_or_a_garbage_record_is_refused(tiny):
    (tiny / "tokenizer.json").unlink()
    with pytest.raises(AssayError, match="lacks tokenizer.json"):
        organisms.verify(tiny)
    (tiny / organisms.INTEGRITY).write_text("not json")
    with pytest.raises(AssayError, match="unreadable integrity.json"):
        organisms.verify(tiny)


def test_a_cache_from_before_integrity_records_is_sealed_on_first_use(tiny):
    (tiny / organisms.INTEGRITY).unlink()
    organisms._verified.clear()
    assert organisms.organism_path("tiny") == tiny
    assert (tiny / organisms.INTEGRITY).is_file()


def test_a_packed_stage_installs_in_another_cache_only_intact(tiny, tmp_path, monkeypatch):
    files = organisms.pack("tiny")
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "other"))
    assert not organisms.cached("tiny")
    damaged = dict(files)
    blob = bytearray(damaged["model.safetensors"])
    blob[-1] ^= 0xFF
    damaged["model.safetensors"] = bytes(blob)
    with pytest.raises(AssayError, match="arrived damaged"):
        organisms.install("tiny", damaged)
    with pytest.raises(AssayError, match="without integrity.json"):
        organisms.install("tiny", {k: v for k, v in files.items() if k != organisms.INTEGRITY})
    assert not organisms.cached("tiny")
    assert not [p for p in (tmp_path / "other" / "organisms").iterdir() if p.name != ".locks"]
    folder = organisms.install("tiny", files)
    assert organisms.sha256_file(folder / "model.safetensors") == \
        organisms.sha256_file(tiny / "model.safetensors")


def test_a_context_fetches_a_missing_organism_instead_of_training_it(tiny, tmp_path, monkeypatch):
    from assay.study import Context

    files = organisms.pack("tiny")
    asked = []
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "worker"))
    monkeypatch.setattr(Context, "fetch", lambda name: asked.append(name) or files)
    monkeypatch.setattr(organisms, "_build_stage", lambda *a, **k: pytest.fail("trained"))
    ctx = Context(0, tmp_path / "art", model="organism:tiny")
    ctx.lm()
    assert asked == ["tiny"]
    assert ctx.weights == {"tiny": organisms.sha256_file(tiny / "model.safetensors")}


def test_an_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "tiny", TINY)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ASSAY_HOME", str(blocker))
    with pytest.raises(AssayError, match="not a writable folder.*set ASSAY_HOME"):
        organisms.organism_path("tiny")
