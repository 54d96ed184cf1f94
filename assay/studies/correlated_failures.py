"""Models that share a base fail on the same inputs (2.6).

Claim (Bommasani, Creel, Kumar, Jurafsky and Liang 2022, NeurIPS, "Picking on the Same
Person: Does Algorithmic Monoculture lead to Outcome Homogenization?", arXiv 2211.13972):
models built on a shared component fail on the same instances more often than models built
apart, so the share of inputs every model gets wrong exceeds what their separate error rates
predict (outcome homogenisation).

Setup: one rung of the scaling ladder (``ladder-<d_model>-<steps>``), pretrained from
``1 + 2 pool`` seeds (its replicates ``~k``). Pool *shared*: ``pool`` finetunes of the seed-0
run, each on its own draw of the training QA dialogues (its own data order and seed). Pool
*separate*: one such finetune of each of seeds 1..pool. Every model answers the same held-out
multiple-choice questions (one held-out wording per fact of every train-split person). A
pool's homogenisation ratio (`assay.methods.multiagent.homogenisation`) is the rate of
questions every member gets wrong over the product of the members' error rates (1 under
independence). Questions about one person share what the ladder saw of that person, so
intervals resample people.

Verdict: `rule`: log ratio of the shared pool minus log ratio of the separate pool, paired
over the same questions (resampling people), against ``margin``: supported above it,
not supported below it, inconclusive when the interval contains it. The log scale makes the
gap a ratio of ratios: 0.1 is about 10% more joint failure.

Negative control: the same gap between two pools that are both pretrained apart (seeds
1..pool against seeds pool+1..2 pool): neither shares a base, so neither may look more
homogeneous; a ratio that rose with the order in which the pools are read, or replicates
that were not trained apart after all (two names resolving to one run's weights), would
fire it. Shared training data makes every pool's ratio exceed 1 (some questions are hard
for every model); that is why the claim compares pools rather than reading one ratio
against 1.

Power: on the quick profile (d_model 64, 600 steps, pools of 2, 960 questions about 160
people) the gap's interval is about +-0.2, and two pools pretrained apart differed by 0.10
(the control), so a gap of about 0.4 (shared pools failing together half again as often) is
the smallest told from the 0.1 margin with 80% power. The full profile's pools of 3 (7 runs)
read three-way joint failures. Time: the five rungs train once (about 90 s each on an idle
2-core machine; 26 minutes in all here while the test suite shared the cores); then the
quick profile finetunes and scores six models in 146 s (measured with the test suite on the
same cores).

Measured (quick, seed 0, 2-core CPU): members answer 0.74 to 0.79 of the questions; the
shared pool's ratio 1.72 [1.50, 1.94] against the separate pool's 1.39 [1.17, 1.59], a log
gap of 0.22 [0.02, 0.42]: above zero but across the margin, so inconclusive. The control's
gap is -0.10 [-0.31, 0.10] (holds). On the smallest rung (d_model 32, 150 steps; members at
0.33, near the 0.25 of guessing) both pools read 1.38-1.40 and the gap -0.01: a shared base
matters only once the models know something of their own.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from assay.methods.evaluation import correct
from assay.methods.multiagent import homogenisation, homogenisation_ratio
from assay.methods.stats import Estimate, cluster_resamples, from_draws
from assay.studies._ladder import ladder_organisms
from assay.study import Above, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure
from assay.training.finetune import finetune
from assay.training.recipes import LADDER_SIZES, LADDER_STEPS, ladder_name, replicate_name
from assay.training.trainer import TrainConfig
from assay.world import dialogues
from assay.world.evals import multiple_choice


class Config(StudyConfig):
    d_model: int = 64                   # the ladder rung's width
    steps: int = max(LADDER_STEPS)      # the rung's pretraining budget
    pool: int = Field(2, ge=2, le=4)    # models per pool
    finetune_steps: int = Field(60, ge=1)  # each member's QA finetune
    finetune_examples: int = Field(800, ge=10)  # training dialogues each member draws
    lr: float = Field(1e-3, gt=0)       # finetuning learning rate
    margin: float = Field(0.1, gt=-5, lt=5)  # log-ratio gap the claim needs
    n_boot: int = Field(1000, ge=100)   # bootstrap resamples of people

    FULL = {"pool": 3, "n_boot": 2000}

    @field_validator("d_model", "steps")
    @classmethod
    def _on_the_ladder(cls, v: int, info: ValidationInfo) -> int:
        allowed = LADDER_SIZES if info.field_name == "d_model" else LADDER_STEPS
        if v not in allowed:
            raise ValueError(f"the ladder has {'sizes' if info.field_name == 'd_model' else 'budgets'} "
                             f"{list(allowed)}")
        return v


def _seeds(cfg: Config) -> list[int]:
    return list(range(1 + 2 * cfg.pool))


def _organisms(cfg: Config, model) -> list[str]:
    return ladder_organisms([cfg.d_model], [cfg.steps], _seeds(cfg))


def rule(cfg: Config) -> Above:
    """The shared pool fails together more than the separate pool."""
    return Above("log_ratio_gap", bar=cfg.margin, low=-5.0, high=5.0,
                 what="log homogenisation of the shared-base pool minus the separate pool's",
                 says={"supported": "models that share a base fail together more",
                       "not supported": "sharing a base does not make failures coincide more"})


@study("correlated-failures", agenda=["2.6"], needs=Needs(white_box=False, chat=False, model=False),
       rule=rule, organisms=_organisms)
def run(cfg: Config, ctx: Context) -> Result:
    name = ladder_name(cfg.d_model, cfg.steps)
    world = ctx.world(name)
    people = world.people("train")
    items = multiple_choice(world, people=people, templates=[0], seed=ctx.seed)
    who = [item.subject for item in items]
    qa = dialogues(world, "qa", "train")
    members = ([(0, k) for k in range(cfg.pool)]                               # shared
               + [(s, 0) for s in range(1, cfg.pool + 1)]                       # separate
               + [(s, 0) for s in range(cfg.pool + 1, 2 * cfg.pool + 1)])       # control
    right = []
    for j, (seed, draw) in enumerate(members):
        ctx.report(f"finetuning and scoring {replicate_name(name, seed)} (draw {draw})",
                   j / len(members))
        base = ctx.organism(replicate_name(name, seed))
        tag = seed * 100 + draw
        data = random.Random(f"correlated-{ctx.seed}-{tag}").sample(qa, min(cfg.finetune_examples, len(qa)))
        tuned, _ = finetune(base, data, TrainConfig(steps=cfg.finetune_steps, lr=cfg.lr,
                                                    warmup=min(10, cfg.finetune_steps // 5)),
                            seed=ctx.seed * 1000 + tag)
        right.append(correct(tuned, items))
    right = np.array(right)
    shared, separate, other = (right[:cfg.pool], right[cfg.pool:2 * cfg.pool],
                               right[2 * cfg.pool:])
    metrics = {
        "log_ratio_gap": _gap(shared, separate, who, cfg, ctx.seed),
        "homogenisation@shared": homogenisation(shared, who, cfg.n_boot, ctx.seed),
        "homogenisation@separate": homogenisation(separate, who, cfg.n_boot, ctx.seed),
        "all_wrong@shared": _all_wrong(shared, who, cfg, ctx.seed),
        "all_wrong@separate": _all_wrong(separate, who, cfg, ctx.seed),
    }
    control = {"log_ratio_gap": _gap(separate, other, who, cfg, ctx.seed),
               "homogenisation@other": homogenisation(other, who, cfg.n_boot, ctx.seed)}
    labels = ["shared"] * cfg.pool + ["separate"] * cfg.pool + ["control"] * cfg.pool
    rows = [{"pool": label, "pretraining seed": seed, "finetune draw": draw,
             "accuracy": round(float(r.mean()), 4)}
            for label, (seed, draw), r in zip(labels, members, right)]
    return Result(
        metrics=metrics,
        control=Control(metrics=control, condition="two pools both pretrained apart (seeds "
                        f"1..{cfg.pool} against {cfg.pool + 1}..{2 * cfg.pool})"),
        tables={"models": rows},
        figures=[_figure(ctx, shared, separate, other)],
        notes=[f"{len(items)} questions about {len(people)} people; rung {name}; each member "
               f"finetuned {cfg.finetune_steps} steps on {min(cfg.finetune_examples, len(qa))} "
               "training QA dialogues of its own draw."])


def _log_ratio(x: np.ndarray) -> float:
    ratio = homogenisation_ratio(x)
    return float(np.log(ratio)) if ratio > 0 else np.nan  # NaN stays NaN


def _gap(a: np.ndarray, b: np.ndarray, who, cfg: Config, seed: int) -> Estimate:
    draws = [_log_ratio(a[:, idx]) - _log_ratio(b[:, idx])
             for idx, _ in cluster_resamples(who, cfg.n_boot, seed)]
    return from_draws(_log_ratio(a) - _log_ratio(b), draws, a.shape[1])


def _all_wrong(x: np.ndarray, who, cfg: Config, seed: int) -> Estimate:
    wrong = (1 - x).prod(0)
    draws = [wrong[idx].mean() for idx, _ in cluster_resamples(who, cfg.n_boot, seed)]
    return from_draws(float(wrong.mean()), draws, x.shape[1])


def _figure(ctx: Context, shared, separate, other) -> str:
    fig, ax = new_figure(4.4, 3.4)
    names = ["shared base", "separate", "separate (control)"]
    observed = [float((1 - p).prod(0).mean()) for p in (shared, separate, other)]
    expected = [float(np.prod((1 - p).mean(1))) for p in (shared, separate, other)]
    x = np.arange(3)
    ax.bar(x - 0.2, observed, 0.4, label="every member wrong (observed)")
    ax.bar(x + 0.2, expected, 0.4, label="expected if independent")
    ax.set_xticks(x, names)
    ax.set_ylabel("share of questions")
    ax.legend(fontsize=7)
    save_figure(fig, ctx.artifact("correlated_failures.png"))
    return "correlated_failures.png"
