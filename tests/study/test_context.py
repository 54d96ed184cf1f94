import numpy as np
import pytest

from assay.errors import AssayError
from assay.study import Context
from assay.training.recipes import get_recipe


def test_rng_is_seeded(tmp_path):
    a = Context(seed=5, artifacts=tmp_path).rng.random(4)
    b = Context(seed=5, artifacts=tmp_path).rng.random(4)
    c = Context(seed=6, artifacts=tmp_path).rng.random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_torch_seed_makes_torch_repeatable(tmp_path):
    import torch

    ctx = Context(seed=9, artifacts=tmp_path)
    ctx.torch_seed()
    x = torch.rand(3)
    ctx.torch_seed()
    torch.testing.assert_close(torch.rand(3), x)


def test_artifact_paths_stay_inside_the_folder(tmp_path):
    ctx = Context(seed=0, artifacts=tmp_path / "unit")
    path = ctx.artifact("curve.png")
    assert path == tmp_path / "unit" / "curve.png"
    assert path.parent.is_dir()
    for bad in ["../x", "..", "a/b", "a\\b", "", "x/../../y"]:
        with pytest.raises(AssayError, match="bad artifact name"):
            ctx.artifact(bad)


def test_world_is_the_recipe_world(tmp_path):
    ctx = Context(seed=0, artifacts=tmp_path)
    world = ctx.world("xs")
    assert world.config == get_recipe("xs").world
    assert ctx.world("xs") is world
    with pytest.raises(AssayError, match="unknown organism"):
        ctx.world("nope")


def test_report_forwards_progress(tmp_path):
    seen = []
    Context(seed=0, artifacts=tmp_path, progress=lambda m, f: seen.append((m, f))).report("half", 0.5)
    Context(seed=0, artifacts=tmp_path).report("nobody listens", 0.5)
    assert seen == [("half", 0.5)]


def test_lm_uses_the_model_spec(tmp_path, monkeypatch):
    import assay.models

    loaded = []
    monkeypatch.setattr(assay.models, "load", lambda spec: loaded.append(spec) or object())
    monkeypatch.setattr("assay.training.organisms.cached", lambda name: True)  # no training
    monkeypatch.setattr("assay.training.organisms.weights_sha256", lambda name: f"sha-{name}")
    ctx = Context(seed=0, artifacts=tmp_path, model="organism:xs")
    lm = ctx.lm()
    assert ctx.lm() is lm and ctx.organism("xs") is lm
    assert [str(x) for x in loaded] == ["organism:xs"]
    assert ctx.organisms == {"xs": get_recipe("xs").hash}
    assert ctx.weights == {"xs": "sha-xs"}  # provenance names the weights it loaded
