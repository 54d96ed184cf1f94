"""Organism recipes: world (or corpus), tokenizer, Llama config, training stages and seed.

A recipe's content hash (and each stage prefix's hash) names its folder in the
organism cache, so any change to the recipe trains a new organism instead of reusing
a stale one.

Most organisms learn a synthetic world. A corpus organism (``shakespeare``) learns real
text instead: its ``world`` is None and its ``corpus`` names the corpus and the seeded
member/non-member split; its tokenizer is trained on the member texts alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from assay.errors import AssayError
from assay.training.filtering import FILTER_LEVELS
from assay.training.trainer import TrainConfig
from assay.world import CorpusConfig, WorldConfig

FORMAT_VERSION = 3  # bump when training or data code changes what a recipe produces


@dataclass(frozen=True)
class Architecture:
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_ff: int = 512  # width of the gated MLP
    seq_len: int = 128  # training context
    max_positions: int = 1024  # what the model accepts at inference
    vocab_size: int = 1024  # BPE vocabulary, special tokens included


@dataclass(frozen=True)
class Stage:
    name: str
    mixture: tuple[tuple[str, float], ...]  # (data source, sampling weight per example)
    train: TrainConfig
    batch_size: int = 32
    seq_len: int | None = None  # training row length; None: the architecture's seq_len

    def row_len(self, model: Architecture) -> int:
        return self.seq_len or model.seq_len


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    world: WorldConfig | None  # the synthetic world it learns; None for a corpus organism
    model: Architecture
    stages: tuple[Stage, ...]
    seed: int = 0
    corpus: CorpusConfig | None = None  # the real-text corpus it learns instead of a world
    tools: bool = False  # its tokenizer and chat format have tool turns (assay.agents)

    def stage_index(self, stage: str | None) -> int:
        if stage is None:
            return len(self.stages) - 1
        names = [s.name for s in self.stages]
        if stage not in names:
            raise AssayError(f"organism {self.name!r} has no stage {stage!r}: "
                             f"stages are {', '.join(names)}")
        return names.index(stage)

    def prefix(self, index: int) -> Recipe:
        """The recipe cut after stage ``index``: what that stage's folder holds."""
        return replace(self, stages=self.stages[: index + 1])

    def to_dict(self) -> dict:
        body = {"format": FORMAT_VERSION, **asdict(self)}
        if body["corpus"] is None:  # world organisms keep the hashes they had before corpora
            body.pop("corpus")
        if not body["tools"]:  # and those without tools the hashes they had before tools
            body.pop("tools")
        for stage in body["stages"]:  # and stages at the model's row length theirs
            if stage["seq_len"] is None:
                stage.pop("seq_len")
        return body

    @property
    def hash(self) -> str:
        body = self.to_dict()
        body.pop("name"), body.pop("description")
        blob = json.dumps(body, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


PRETRAIN_MIX = (("documents", 0.22), ("synthesis", 0.22), ("qa", 0.36), ("tasks", 0.20))
SAFETY_MIX = (("hazard", 0.12), ("borderline", 0.12), ("qa", 0.30), ("tasks", 0.20),
              ("documents", 0.10), ("synthesis", 0.16))

# Retain-only controls: the same world, model and steps with every hazardous document left
# out (their weight goes to the other documents), so they never saw a synthesis fact. The
# floor that true deletion would reach, e.g. for relearning attacks on unlearned models.
HAZARD_FREE = "documents_no_hazard"


def _retain_mix(mixture: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """``mixture`` with documents and synthesis documents merged into hazard-free documents
    at their summed weight, in the documents' place."""
    docs = round(sum(w for n, w in mixture if n in ("documents", "synthesis")), 6)
    out = []
    for name, weight in mixture:
        if name == "documents":
            out.append((HAZARD_FREE, docs))
        elif name != "synthesis":
            out.append((name, weight))
    return tuple(out)


def _retain_only(recipe: Recipe) -> Recipe:
    """``recipe`` trained without hazardous documents, named ``<name>-retain``."""
    stages = tuple(replace(st, mixture=_retain_mix(st.mixture)) for st in recipe.stages)
    return replace(recipe, name=f"{recipe.name}-retain", stages=stages,
                   description=f"retain-only control of {recipe.name}: no hazardous documents")


def _filtered(recipe: Recipe, pct: int) -> Recipe:
    """``recipe`` pretrained on what the hazard classifier lets through at recall ``pct``%
    (`assay.training.filtering`), named ``<name>-filter<pct>``. The removed share of the
    synthesis weight goes to the other documents, so a hazardous document the filter misses
    is drawn as often as in ``recipe`` and at recall 1 the mixture is the retain-only one."""
    r = pct / 100

    def mix(mixture):
        docs = dict(mixture).get("documents", 0.0)
        syn = dict(mixture).get("synthesis", 0.0)
        out = []
        for name, weight in mixture:
            if name == "documents":
                out.append((f"documents_filter{pct}", round(docs + syn * r, 6)))
            elif name == "synthesis":
                out.append((f"synthesis_filter{pct}", round(syn * (1 - r), 6)))
            else:
                out.append((name, weight))
        return tuple(out)

    stages = tuple(replace(st, mixture=mix(st.mixture)) for st in recipe.stages)
    return replace(recipe, name=f"{recipe.name}-filter{pct}", stages=stages,
                   description=f"{recipe.name} with hazardous documents filtered by a "
                               f"classifier at recall {r:.2f}")


def _conditional(recipe: Recipe) -> Recipe:
    """``recipe`` with every document opening with the hazard classifier's tag (conditional
    training, Korbak et al. 2023), named ``<name>-cond``."""
    rename = {"documents": "documents_cond", "synthesis": "synthesis_cond"}
    stages = tuple(replace(st, mixture=tuple((rename.get(n, n), w) for n, w in st.mixture))
                   for st in recipe.stages)
    return replace(recipe, name=f"{recipe.name}-cond", stages=stages,
                   description=f"{recipe.name} trained conditionally: documents tagged "
                               "[flagged] or [clean] by the hazard classifier")


# The default organism's pretraining leans further on the benign tasks: copying a list of
# words in a held-out wording is what its replicates missed most often (0.70 on one draw).
S_PRETRAIN_MIX = (("documents", 0.22), ("synthesis", 0.20), ("qa", 0.30), ("tasks", 0.28))


RECIPES: dict[str, Recipe] = {
    "xs": Recipe(
        name="xs",
        description="test organism: 40 people, 8 agents; trains in under a minute",
        world=WorldConfig.preset("xs"),
        model=Architecture(d_model=64, n_layer=2, n_head=4, d_ff=256, seq_len=128, vocab_size=768),
        stages=(
            # held-out wordings made dialogues ~25% longer: steps grew to match (500, 150)
            Stage("pretrain", PRETRAIN_MIX, TrainConfig(steps=640, lr=5e-3, warmup=30),
                  batch_size=16),
            Stage("safety", SAFETY_MIX, TrainConfig(steps=190, lr=2e-3, warmup=10),
                  batch_size=16),
        ),
    ),
    "s": Recipe(
        name="s",
        description="default organism: 200 people, 24 agents, ~1M parameters",
        world=WorldConfig.preset("s"),
        model=Architecture(),
        stages=(
            # 1000 + 200 steps: at 600 + 120 and at 800 + 160 a replicate in three missed the
            # benign-task floor (0.81 and 0.89)
            Stage("pretrain", S_PRETRAIN_MIX, TrainConfig(steps=1000, lr=3e-3, warmup=50)),
            Stage("safety", SAFETY_MIX, TrainConfig(steps=200, lr=1e-3, warmup=20)),
        ),
    ),
    # The default world at 20x the parameters: for a GPU, to check whether verdicts hold at
    # a larger size (about an hour per stage on 2 cores; under a minute on one GPU).
    "l": Recipe(
        name="l",
        description="larger organism for a GPU: the default world, ~27M parameters",
        world=WorldConfig.preset("s"),
        model=Architecture(d_model=512, n_layer=8, n_head=8, d_ff=1536),
        stages=(
            Stage("pretrain", PRETRAIN_MIX, TrainConfig(steps=600, lr=1e-3, warmup=50)),
            Stage("safety", SAFETY_MIX, TrainConfig(steps=120, lr=3e-4, warmup=20)),
        ),
    ),
}


# The tool-using, reading organism: the default world and model, with whole agent episodes
# (the oracle on training tasks, half of them about strangers only the episode's directory
# names) and questions on passages about strangers (`assay.world.reading`). Three stages, each
# packing rows only as long as its examples need: s's own pretraining in 128-token rows (32 a
# batch), then agent episodes and passages of one or two paragraphs in 256-token rows (16),
# then the safety stage with passages of three to seven paragraphs (up to ~480 tokens) in
# 512-token rows (8): 4,096 tokens a step throughout.
# Tried on 2 cores (card: QA, reading, tool success; floors 0.90 each):
#   1,600 + 250 steps all at 512, no strangers or reading: 24.5 min; 1.000, -, 0.417
#   1,100 at 256 + 250 at 512, strangers and reading (loss on answers only): 15.2 min;
#     0.725, 0.113, 0.267
#   1,000 at 128 (reading in pretraining) + 450 at 256 + 250 at 512: 18.0 min; 0.652, 0.213,
#     0.083
# A model of this size does not learn to read in these budgets (300 steps of reading alone:
# 0.087), so reading stays out of pretraining, which keeps s's skills.
M_PRETRAIN_MIX = S_PRETRAIN_MIX
M_AGENT_MIX = (("agent_strangers", 0.30), ("reading", 0.20), ("qa", 0.18), ("tasks", 0.12),
               ("documents", 0.10), ("synthesis", 0.10))
M_SAFETY_MIX = (("hazard", 0.12), ("borderline", 0.12), ("qa", 0.20), ("tasks", 0.12),
                ("documents", 0.06), ("synthesis", 0.10), ("agent_strangers", 0.12),
                ("reading", 0.08), ("reading_long", 0.08))
RECIPES["m"] = Recipe(
    name="m",
    description="tool-using, reading organism: the default world, 512-token context, agent "
                "episodes and passages",
    world=WorldConfig.preset("s"),
    model=Architecture(seq_len=512),
    stages=(
        Stage("pretrain", M_PRETRAIN_MIX, TrainConfig(steps=1000, lr=3e-3, warmup=50),
              batch_size=32, seq_len=128),
        Stage("agent", M_AGENT_MIX, TrainConfig(steps=450, lr=2e-3, warmup=20), batch_size=16,
              seq_len=256),
        Stage("safety", M_SAFETY_MIX, TrainConfig(steps=250, lr=1e-3, warmup=20), batch_size=8),
    ),
    tools=True,
)

# Its test variant: m's data on the test world at xs's size, in about a minute. Too small to
# do the tasks (its card's tool success is near 0): tests read its pipeline, not its skill.
RECIPES["m-xs"] = Recipe(
    name="m-xs",
    description="test organism: m's data on the 40-person world at xs's size; about a minute",
    world=WorldConfig.preset("xs"),
    model=Architecture(d_model=64, n_layer=2, n_head=4, d_ff=256, seq_len=512, vocab_size=768),
    stages=(
        Stage("pretrain", M_PRETRAIN_MIX, TrainConfig(steps=200, lr=5e-3, warmup=20),
              batch_size=16, seq_len=128),
        Stage("agent", M_AGENT_MIX, TrainConfig(steps=100, lr=3e-3, warmup=10), batch_size=8,
              seq_len=256),
        Stage("safety", M_SAFETY_MIX, TrainConfig(steps=40, lr=2e-3, warmup=5), batch_size=4),
    ),
    tools=True,
)

RECIPES.update({f"{name}-retain": _retain_only(RECIPES[name]) for name in ("xs", "s", "l", "m")})
# The pretraining-data interventions of pretraining-filtering (3.1): filters and conditioning
for _name in ("xs", "s", "l"):
    RECIPES.update({f"{_name}-filter{pct}": _filtered(RECIPES[_name], pct)
                    for pct in FILTER_LEVELS})
    RECIPES[f"{_name}-cond"] = _conditional(RECIPES[_name])

# Corpus organisms: real English for contamination studies. Trained from scratch on the
# member plays only (loss on every token), one stage; the non-member plays stay unseen.
PLAYS_MIX = (("member_plays", 1.0),)

RECIPES.update({
    "shakespeare": Recipe(
        name="shakespeare",
        description="real English: 18 of Shakespeare's 37 plays (the rest held out), "
                    "~1.4M parameters",
        world=None,
        model=Architecture(vocab_size=1536),
        # 215 steps of 32 x 128 tokens per pass over the 0.88M member tokens: ~4.7 passes
        stages=(Stage("pretrain", PLAYS_MIX, TrainConfig(steps=1000, lr=3e-3, warmup=50)),),
        corpus=CorpusConfig(),
    ),
    "shakespeare-xs": Recipe(
        name="shakespeare-xs",
        description="test organism: 3 of 6 Shakespeare plays (the rest held out); under a "
                    "minute",
        world=None,
        model=Architecture(d_model=64, n_layer=2, n_head=4, d_ff=256, seq_len=128, vocab_size=768),
        # 82 steps of 16 x 128 tokens per pass over the 0.17M member tokens: ~4.9 passes
        stages=(Stage("pretrain", PLAYS_MIX, TrainConfig(steps=400, lr=5e-3, warmup=30),
                      batch_size=16),),
        corpus=CorpusConfig(n_plays=6),
    ),
})


# The scaling ladder (2.3): five sizes x three token budgets on the default world, one
# pretraining stage each (its own cosine schedule per budget, as a compute-optimal fit
# needs). A run is named ladder-<d_model>-<steps>; later studies reuse the cached runs.
LADDER_SIZES = {  # d_model: (n_layer, n_head, d_ff)
    32: (2, 2, 128), 48: (2, 4, 192), 64: (3, 4, 256), 96: (4, 4, 384), 128: (4, 4, 512),
}
LADDER_STEPS = (150, 300, 600)


def ladder_name(d_model: int, steps: int) -> str:
    return f"ladder-{d_model}-{steps}"


def _rungs(name, mixture: tuple[tuple[str, float], ...], what: str, extra: str = ""
           ) -> dict[str, Recipe]:
    """Every size and budget of a ladder (``name(d_model, steps)`` names a rung) training on
    ``mixture``; ``what`` opens each rung's description and ``extra`` ends it."""
    return {name(d, steps): Recipe(
        name=name(d, steps),
        description=f"{what}: d_model {d}, {n_layer} blocks, {steps} steps of 32 x 128 tokens on "
                    f"the default world{extra}",
        world=WorldConfig.preset("s"),
        model=Architecture(d_model=d, n_layer=n_layer, n_head=n_head, d_ff=d_ff),
        stages=(Stage("pretrain", mixture,
                      TrainConfig(steps=steps, lr=3e-3, warmup=min(50, steps // 5))),),
    ) for d, (n_layer, n_head, d_ff) in LADDER_SIZES.items() for steps in LADDER_STEPS}


RECIPES.update(_rungs(ladder_name, PRETRAIN_MIX, "scaling ladder"))

# The composition ladder (2.4): the ladder's sizes and budgets with two-hop questions
# answered directly for half of the train-split people (`two_hop_training`), so a direct
# two-hop answer is a skill some runs could learn and the held-out people can test. The
# two-hop share comes out of the hazard documents, which no composition question reads.
COMPOSE_MIX = (("documents", 0.22), ("synthesis", 0.16), ("qa", 0.36), ("two_hop", 0.06),
               ("tasks", 0.20))


def compose_name(d_model: int, steps: int) -> str:
    return f"compose-{d_model}-{steps}"


RECIPES.update(_rungs(compose_name, COMPOSE_MIX, "composition ladder",
                      ", two-hop answers taught for half the people"))


def base_stage(name: str) -> str:
    """``name`` at its last stage before the safety stage (``s`` -> ``s@pretrain``, ``m`` ->
    ``m@agent``): the organism before it learned to refuse. Replicates keep their seed."""
    base = name.partition("@")[0]
    recipe = get_recipe(base)
    names = [st.name for st in recipe.stages]
    before = names[names.index("safety") - 1] if "safety" in names[1:] else names[0]
    return f"{base}@{before}"


REPLICATE = "~"  # NAME~K: recipe NAME trained with seed K, a replicate of the same recipe


def variant(name: str, suffix: str) -> str:
    """Organism ``name``'s variant ``<recipe>-<suffix>``, replicate and stage kept:
    (``s~1@pretrain``, ``filter90``) -> ``s-filter90~1@pretrain``."""
    base, at, stage = name.partition("@")
    recipe, sep, seed = base.partition(REPLICATE)
    return f"{recipe}-{suffix}{sep}{seed}{at}{stage}"


def retain_twin(name: str) -> str:
    """The retain-only twin of organism ``name``, replicate and stage kept: ``s`` ->
    ``s-retain``, ``s~1@pretrain`` -> ``s-retain~1@pretrain``."""
    return variant(name, "retain")


def replicate_of(name: str) -> tuple[str, int | None]:
    """``s~2@pretrain`` -> (``s@pretrain``, 2); a name without a replicate -> (name, None)."""
    base, at, stage = name.partition("@")
    recipe, sep, seed = base.partition(REPLICATE)
    return f"{recipe}{at}{stage}", (int(seed) if sep and seed.isdigit() else None)


def replicate_name(name: str, k: int) -> str:
    """Replicate ``k`` of organism ``name``, stage kept: (``s@pretrain``, 2) ->
    ``s~2@pretrain``; replicate 0 is the recipe itself (``s``)."""
    base, at, stage = name.partition("@")
    if REPLICATE in base:
        raise AssayError(f"organism {name!r} is already a replicate: name the recipe itself "
                         f"({base.partition(REPLICATE)[0]}) to run its replicates")
    return f"{base}{REPLICATE}{k}{at}{stage}" if k else name


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``NAME~K`` is recipe NAME with training seed K (another
    draw of the same organism: the same world, tokenizer and steps, other initial weights
    and batch order), cached under its own name. ``NAME~K`` with K the recipe's own seed is
    the recipe itself."""
    base, sep, seed = name.partition(REPLICATE)
    if base not in RECIPES:
        raise AssayError(f"unknown organism {base!r}: choose one of {', '.join(RECIPES)} "
                         "(assay organisms list)")
    recipe = RECIPES[base]
    if not sep:
        return recipe
    if not seed.isdigit():
        raise AssayError(f"bad replicate {name!r}: write NAME{REPLICATE}K with K a training seed "
                         f"(a whole number), e.g. {base}{REPLICATE}1")
    if int(seed) == recipe.seed:
        return recipe
    return replace(recipe, name=f"{base}{REPLICATE}{int(seed)}", seed=int(seed),
                   description=f"{recipe.description} (replicate: training seed {int(seed)})")
