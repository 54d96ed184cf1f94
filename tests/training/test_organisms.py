import json
import multiprocessing as mp
import os
from dataclasses import replace

import pytest

from assay.errors import AssayError
from assay.training import organisms
from assay.training.recipes import RECIPES, Architecture, Recipe, Stage
from assay.training.trainer import TrainConfig
from assay.world import WorldConfig

TINY = Recipe(
    name="tiny", description="plumbing only", world=WorldConfig.preset("xs"),
    model=Architecture(d_model=32, n_layer=1, n_head=2, d_ff=64, seq_len=64, vocab_size=400),
    stages=(Stage("pretrain", (("documents", 1.0),), TrainConfig(steps=12, warmup=2), 8),
            Stage("safety", (("hazard", 1.0),), TrainConfig(steps=4, warmup=1), 8)),
)

@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(RECIPES, "tiny", TINY)
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path))
    return tmp_path


def test_xs_clears_its_floors(xs_organism):
    from assay.training.card import FLOORS_XS, floor_failures, floors_for

    assert floors_for("xs") == floors_for("xs~1") == FLOORS_XS
    assert floors_for("xs@pretrain") == {} and floors_for("ladder-128-600") == {}
    _, card = xs_organism
    assert not floor_failures(card, FLOORS_XS), floor_failures(card, FLOORS_XS)
    # the refusal hides knowledge the model has: it refuses what it can complete
    assert card["hazard_leak_rate"] == 0.0
    for key in ("qa_accuracy", "two_hop_accuracy", "benign_task_accuracy", "hazard_refusal_rate",
                "borderline_over_refusal_rate", "hazard_knowledge_probe", "params", "tokens",
                "flops", "train_seconds", "weights_sha256"):
        assert key in card


def test_xs_folder_is_a_plain_hugging_face_model(xs_organism):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, card = xs_organism
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == card["params"]
    assert tok.chat_template and json.loads((folder / "recipe.json").read_text())["name"] == "xs"
    stages = json.loads((folder / "curve.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["pretrain", "safety"]
    assert stages[0]["loss"][-1] < stages[0]["loss"][0] / 3


def test_same_recipe_gives_the_same_weights_in_two_homes(tiny, tmp_path_factory, monkeypatch):
    shas = []
    for _ in range(2):
        monkeypatch.setenv("ASSAY_HOME", str(tmp_path_factory.mktemp("home")))
        folder = organisms.organism_path("tiny")
        shas.append((organisms.sha256_file(folder / "model.safetensors"),
                     (folder / "tokenizer.json").read_text()))
    assert shas[0] == shas[1]


def test_stages_are_cached_and_reused(tiny, monkeypatch):
    base = organisms.organism_path("tiny@pretrain")
    assert base.name.startswith("tiny-pretrain-")
    calls = []
    build = organisms._build_stage
    monkeypatch.setattr(organisms, "_build_stage", lambda r, i, p: calls.append(i) or build(r, i, p))
    final = organisms.organism_path("tiny")
    assert calls == [1], "the cached pretrain stage must not be rebuilt"
    assert organisms.organism_path("tiny") == final and calls == [1]
    # a recipe change names a new folder instead of reusing a stale one
    changed = replace(TINY, stages=(TINY.stages[0], replace(TINY.stages[1], batch_size=4)))
    assert changed.hash != TINY.hash and changed.prefix(0).hash == TINY.prefix(0).hash


def test_half_written_folder_is_not_taken_for_finished(tiny):
    recipe = RECIPES["tiny"]
    folder = organisms.stage_dir(recipe, 0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # as if a copy died half-way
    assert not organisms.is_complete(folder)
    assert organisms.organism_path("tiny@pretrain") == folder
    assert organisms.is_complete(folder)
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


def _ask(name, log):
    """In a fresh interpreter: register the tiny recipe, log each build, ask for it."""
    import torch

    torch.set_num_threads(1)  # two trainers on two cores must not thrash
    RECIPES["tiny"] = TINY
    build = organisms._build_stage

    def logged(recipe, index, progress):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {index}\n")
        return build(recipe, index, progress)

    organisms._build_stage = logged
    organisms.organism_path(name)


def test_two_processes_asking_at_once_build_once(tiny, tmp_path):
    log = tmp_path / "builds.log"
    ctx = mp.get_context("spawn")  # fork after torch's thread pool started can hang
    procs = [ctx.Process(target=_ask, args=("tiny", str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    builds = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(builds) == ["0", "1"], f"each stage must be built exactly once: {builds}"
    assert organisms.is_complete(organisms.stage_dir(RECIPES["tiny"], 1))


def test_unknown_organism_and_stage_are_assay_errors(tiny):
    with pytest.raises(AssayError, match="unknown organism 'nope'.*xs"):
        organisms.organism_path("nope")
    with pytest.raises(AssayError, match="no stage 'later'.*pretrain, safety"):
        organisms.organism_path("tiny@later")


def test_a_replicate_is_the_same_recipe_with_another_training_seed():
    from assay.training.recipes import get_recipe, retain_twin

    s, s1, s2 = RECIPES["s"], get_recipe("s~1"), get_recipe("s~2")
    assert (s1.name, s1.seed, s2.seed) == ("s~1", 1, 2)
    assert s1.world == s.world and s1.model == s.model and s1.stages == s.stages
    assert len({s.hash, s1.hash, s2.hash}) == 3  # cached apart
    assert get_recipe("s~0") is s  # the recipe's own seed is the recipe itself
    assert get_recipe("s-retain~1").seed == 1 and get_recipe("s-retain~1").name == "s-retain~1"
    assert retain_twin("s") == "s-retain" and retain_twin("s~1@pretrain") == "s-retain~1@pretrain"
    for bad, message in (("s~x", "bad replicate 's~x'"), ("s~", "bad replicate"),
                         ("zz~1", "unknown organism 'zz'")):
        with pytest.raises(AssayError, match=message):
            get_recipe(bad)


def test_a_replicate_parses_as_a_model_spec_with_its_stage():
    from assay.models import ModelSpec
    from assay.training.organisms import parse_name

    spec = ModelSpec.parse("organism:xs~3@pretrain")
    assert (spec.name, spec.stage, spec.organism) == ("xs~3", "pretrain", "xs~3@pretrain")
    recipe, index = parse_name(spec.organism)
    assert recipe.seed == 3 and recipe.stages[index].name == "pretrain"


def test_a_cache_folder_made_by_another_process_meanwhile_is_fine(tmp_path, monkeypatch):
    """Two processes can both find organisms/ missing; the one whose mkdir comes second
    must carry on, not report an unwritable cache."""
    target = tmp_path / "home" / "organisms"
    real_mkdir = type(target).mkdir

    def racing_mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)  # the other process wins the race...
        if self == target:
            raise FileExistsError(17, "File exists")  # ...and this one then fails

    monkeypatch.setattr(type(target), "mkdir", racing_mkdir)
    assert organisms._writable(target) == target and target.is_dir()
