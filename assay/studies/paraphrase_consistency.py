"""Knowledge is inconsistent across paraphrases, and scale does not remove it (4.3, 3.3).

Claim (Elazar et al. 2021, "Measuring and Improving Consistency in Pretrained Language
Models", TACL, arXiv 2102.01017, with the ParaRel set of 328 paraphrases of 38 relations):
a model's answer to a factual question depends on how the question is worded; every model
they tested was poorly consistent, so a fact the model "knows" in one wording is often
missed or contradicted in another.

Setup: the ladder's sizes at its largest budget (`_ladder`), asked about the six facts of
people whose facts training asks (the train split), each fact in its relation's three
held-out wordings (training asks each core only in other frames, so every string is new to
the model), greedy, in the chat format. Each reply is read as the first of the relation's
objects it names (the world's whole list of cities, companies, professions and so on), or
as no answer. Per fact: consistently right (the true object every time), consistently wrong
(the same wrong answer, or no answer, every time), or inconsistent; among facts the model
gets right in at least one wording, the share it does not get right in all three (known
but inconsistent); and ParaRel's pairwise agreement (the share of wording pairs with the
same answer). Intervals resample people (a person's six facts move together); the change
from the smallest to the largest size is paired on the same resamples. Negations are not
asked: no organism was trained on a negated question, so its answer to one would measure
the format, not the knowledge.

Verdict: `rule`, given that the largest size knows more than ``min_known`` of the facts in
some wording (otherwise there is nothing to be consistent about), the share of those facts
it answers inconsistently lies above ``bar``: supported (knowledge is inconsistent at the
largest size the ladder reaches), not supported below it, inconclusive across it.

Negative control: `control`, the same test on exact repeats: the first held-out wording of
each fact asked three times, in batches that pad and order it differently (among the other
wordings, alone in reverse order, and among the longest prompts first). Greedy decoding of
one string must give one answer, so a share above ``bar`` at any size means the inconsistency
comes from the pipeline (padding that leaks into attention, a reply read at the wrong
offset), not from the wording.

Power: measured on ``s``'s ladder, seed 0, quick profile (960 facts about 160 people): at
the largest rung the share of known facts answered inconsistently is 0.16 ([0.14, 0.19] and
[0.13, 0.18] on two machines' ladders), an interval of about +-0.025, so with the bar at
0.1 a share from about 0.13 upwards is called supported and one under about 0.075 not
supported; the known share is +-0.02 there. The verdict on ``s`` is supported, and the
share falls from 0.71 at d_model 32. 47 s on 2 cores once the ladder is cached.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
from pydantic import Field, model_validator

from assay.methods.stats import Estimate, cluster_resamples, clustered_bootstrap, from_draws
from assay.studies._ladder import ladder_organisms, load_runs
from assay.study import Above, AnyOf, Context, Control, Given, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure
from assay.training.recipes import LADDER_SIZES, LADDER_STEPS
from assay.world import World, first_named, normalize, question_wordings, render_prompt

KINDS = ("consistent_right", "consistent_wrong", "inconsistent")
NONE = "(no answer)"


class Config(StudyConfig):
    sizes: list[int] = list(LADDER_SIZES)   # ladder rungs (d_model), smallest first
    steps: int = max(LADDER_STEPS)          # the budget every size is read at
    n_people: int = Field(160, ge=4)        # train-split people asked about (6 facts each)
    bar: float = Field(0.1, gt=0, lt=1)     # share of known facts answered inconsistently
    min_known: float = Field(0.2, gt=0, lt=1)  # the largest size must know this share
    n_boot: int = Field(1000, ge=100)       # resamples of people

    FULL = {"n_boot": 2000}

    @model_validator(mode="after")
    def _sizes(self):
        if len(set(self.sizes)) < 2:
            raise ValueError(f"sizes {self.sizes}: a trend with size needs at least two sizes")
        return self


def rule(cfg: Config) -> Given:
    """Given the largest size knows enough facts, it answers many of them inconsistently."""
    top = max(cfg.sizes)
    return Given(
        Above(f"known@d{top}", bar=cfg.min_known, low=0.0, high=1.0,
              what=f"share of facts answered right in some wording at d_model {top}"),
        Above(f"inconsistent_known@d{top}", bar=cfg.bar, low=0.0, high=1.0,
              what=f"share of known facts not answered right in every wording at d_model {top}",
              says={"supported": "what the largest model knows, it knows only in some wordings",
                    "not supported": "what the largest model knows, it knows in every wording",
                    "inconclusive": "the interval contains the bar"}),
        why="the largest size knows too few facts for their consistency to mean anything")


def control(cfg: Config) -> AnyOf:
    """Exact repeats of one wording, padded differently, disagree."""
    return AnyOf(*(Above(f"repeat_inconsistent@d{d}", bar=cfg.bar, low=0.0, high=1.0,
                         what=f"share of facts whose three exact repeats disagree at d_model {d}")
                   for d in sorted(set(cfg.sizes))),
                 says={"supported": "one string asked three times gets different answers: the "
                                    "pipeline, not the wording, makes answers differ",
                       "not supported": "exact repeats agree at every size",
                       "inconclusive": "an interval contains the bar"})


@study("paraphrase-consistency", agenda=["4.3", "3.3"], needs=Needs(white_box=False, model=False),
       rule=rule, control=control,
       organisms=lambda cfg, model: ladder_organisms(sorted(set(cfg.sizes)), [cfg.steps]))
def run(cfg: Config, ctx: Context) -> Result:
    world = ctx.world("s")
    people = sorted(random.Random(f"people-{ctx.seed}").sample(
        world.people("train"), min(cfg.n_people, len(world.people("train")))))
    facts = [world.fact(p, r) for p in people for r in world.person_relations]
    who = [f.subject for f in facts]
    objects = {r: world.objects(r) for r in world.person_relations}
    sizes = sorted(set(cfg.sizes))
    runs = load_runs(ctx, sizes, [cfg.steps], 0.0, 0.4)
    read = []
    for j, (run_, lm) in enumerate(runs):
        ctx.report(f"asking {run_.name} {len(facts)} facts in 3 wordings and 3 repeats",
                   0.4 + 0.55 * j / len(runs))
        read.append(ask(lm, facts, objects))
    draws = [idx for idx, _ in cluster_resamples(who, cfg.n_boot, ctx.seed)]
    truth = np.array([normalize(f.object) for f in facts], dtype=object)

    def stats(said: np.ndarray, idx) -> dict[str, float]:
        return _stats(said[idx], truth[idx])

    metrics: dict[str, Estimate] = {}
    negative: dict[str, Estimate] = {}
    rows = []
    for (run_, _), (paraphrases, repeats) in zip(runs, read):
        d = run_.d_model
        point = stats(paraphrases, slice(None))
        boot = [stats(paraphrases, idx) for idx in draws]
        for key, value in point.items():
            metrics[f"{key}@d{d}"] = from_draws(value, [b[key] for b in boot], len(facts))
        rep = np.array([len(set(r)) > 1 for r in repeats], float)
        # a share of 0/1 readings: clustered by person, never narrower than Wilson's interval
        negative[f"repeat_inconsistent@d{d}"] = clustered_bootstrap(rep, who, n_boot=cfg.n_boot,
                                                                    seed=ctx.seed)
        rows.append({"run": run_.name, "N (non-embedding)": run_.n_params,
                     **{k: round(v, 4) for k, v in point.items()},
                     "repeats disagree": round(float(rep.mean()), 4)})
    small, large = (f"d{sizes[0]}", f"d{sizes[-1]}")
    change = [stats(read[-1][0], idx)["inconsistent_known"]
              - stats(read[0][0], idx)["inconsistent_known"] for idx in draws]
    metrics["inconsistency_change"] = from_draws(
        metrics[f"inconsistent_known@{large}"].value - metrics[f"inconsistent_known@{small}"].value,
        change, len(facts))
    relations = _by_relation(world, facts, read[-1][0], truth)
    return Result(
        metrics=metrics, tables={"sizes": rows, f"relations at {large}": relations},
        control=Control(metrics=negative, condition=(
            "the first held-out wording of each fact asked three times, padded and batched "
            "differently each time")),
        figures=[_figure(ctx, runs, rows)],
        notes=[f"{len(facts)} facts about {len(people)} train-split people, each in 3 held-out "
               f"wordings; from {sizes[0]} to {sizes[-1]} d_model the share of known facts "
               f"answered inconsistently changes by {metrics['inconsistency_change'].value:+.3f}",
               "an answer is the first of the relation's objects the reply names; replies "
               "naming none count as one answer, 'no answer'"])


def ask(lm, facts, objects) -> tuple[np.ndarray, np.ndarray]:
    """Per fact, its answers in the three held-out wordings, and in three exact repeats of
    the first wording padded differently (arrays of normalised answers, one row per fact)."""
    wordings = [question_wordings(f.relation, "test") for f in facts]
    prompts = [render_prompt(w.format(s=f.subject)) for f, ws in zip(facts, wordings) for w in ws]
    n = len(facts)
    width = len(wordings[0])
    replies = lm.generate(prompts, max_new_tokens=12, batch_size=96)
    paraphrases = np.array([[_answer(r, objects[f.relation]) for r in replies[i * width:(i + 1) * width]]
                            for i, f in enumerate(facts)], dtype=object)
    first = [prompts[i * width] for i in range(n)]
    # repeat 1: as asked among the other wordings; 2: alone, in reverse order, other batch
    # boundaries; 3: after the longest prompts, so it is padded the most
    alone = lm.generate(first[::-1], max_new_tokens=12, batch_size=37)[::-1]
    order = sorted(range(n), key=lambda i: -len(first[i]))
    longest = [max(prompts, key=len)] * 8
    padded: list[str] = [""] * n
    for start in range(0, n, 24):
        chunk = order[start:start + 24]
        out = lm.generate(longest + [first[i] for i in chunk], max_new_tokens=12, batch_size=32)
        for i, r in zip(chunk, out[len(longest):]):
            padded[i] = r
    repeats = np.array([[paraphrases[i][0], _answer(a, objects[f.relation]),
                         _answer(p, objects[f.relation])]
                        for i, (f, a, p) in enumerate(zip(facts, alone, padded))], dtype=object)
    return paraphrases, repeats


def _answer(reply: str, objects: list[str]) -> str:
    return first_named(reply, objects) or NONE


def _stats(said: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Shares of consistency kinds, known facts, known-but-inconsistent, pairwise agreement."""
    right = said == truth[:, None]
    every = right.all(1)
    some = right.any(1)
    same = np.array([len(set(row)) == 1 for row in said])
    pairs = list(itertools.combinations(range(said.shape[1]), 2))
    agree = np.mean([[row[a] == row[b] for a, b in pairs] for row in said]) if len(said) else np.nan
    known = float(some.mean())
    return {"consistent_right": float(every.mean()),
            "consistent_wrong": float((same & ~every).mean()),
            "inconsistent": float((~same).mean()),
            "known": known,
            "inconsistent_known": float((some & ~every).sum() / some.sum()) if some.any() else np.nan,
            "pairwise_agreement": float(agree)}


def _by_relation(world: World, facts, said: np.ndarray, truth: np.ndarray) -> list[dict]:
    rows = []
    for rel in world.person_relations:
        mask = np.array([f.relation == rel for f in facts])
        s = _stats(said[mask], truth[mask])
        rows.append({"relation": rel, "facts": int(mask.sum()), **{k: round(v, 3) for k, v in s.items()}})
    return rows


def _figure(ctx: Context, runs, rows) -> str:
    fig, (ax1, ax2) = new_figure(4.4, 3.5, ncols=2)
    N = [r.n_params for r, _ in runs]
    bottom = np.zeros(len(rows))
    for kind, colour in zip(KINDS, ("tab:green", "tab:red", "tab:orange")):
        share = np.array([row[kind] for row in rows])
        ax1.bar(range(len(rows)), share, bottom=bottom, color=colour, label=kind.replace("_", " "))
        bottom += share
    ax1.set_xticks(range(len(rows)), [f"{r.d_model}" for r, _ in runs])
    ax1.set_xlabel("d_model")
    ax1.set_ylabel("share of facts")
    ax1.set_title("answers across 3 held-out wordings")
    ax1.legend(fontsize=7)
    for key, label in (("inconsistent_known", "known facts answered inconsistently"),
                       ("pairwise_agreement", "pairwise agreement"),
                       ("repeats disagree", "exact repeats disagree (control)")):
        ax2.plot(N, [row[key] for row in rows], "o-", label=label)
    ax2.set_xscale("log")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel("non-embedding parameters N")
    ax2.set_title("consistency with scale")
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.artifact("consistency.png"))
    return "consistency.png"
