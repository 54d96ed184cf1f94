"""What an evaluation says a model can do depends on how hard it tries (2.2).

Claim (Greenblatt et al. 2024, arXiv 2405.19550, on how finetuning elicits what prompting
misses): one capability, measured four ways, gets very different estimates: zero-shot,
few-shot (solved examples in the prompt), with a simple scaffold (ask the question
plainly, ask again if the reply names no option, map the reply onto the options), and
after a short finetune on the task's format. An evaluation that reports one of them
understates (or overstates) what the model can be made to do.

Setup: the capability is answering a lettered multiple-choice test about people's facts
(``Question: ... A. ... Answer: B``), facts the organism knows but a format it was never
trained on. Accuracy per elicitation on the same items, with intervals that resample
whole people. The gap is the best elicitation's accuracy minus the worst's, cross-fitted:
best and worst are picked on one half of the people and measured on the other, both ways
round, so elicitations that do not differ give a gap centred on zero.

The organisms were trained to answer in their chat format only, which the scaffold uses, so
a gap between the scaffold and lettered elicitations at chance would measure that, not how
hard an evaluation tries. The rule therefore first asks that the lettered test be
answerable at all by some lettered elicitation: the best of zero-shot, few-shot and the
finetune (picked on one half of the people, measured on the other) must beat chance by
``min_lettered``. On `s` no finetune length reaches it: tuned on the 60 other people's
lettered items, the 240 evaluated items read 0.22 after 120 steps (the quick profile), 0.18
after 400 at the same learning rate and 0.23 after 400 at three times it (chance 0.25;
measured on CPU, seed 0). More steps do not teach `s` the format, so the verdict on `s` is
inconclusive for want of a model that reads lettered questions; a recipe trained on several
answer formats is what would let this study decide.

Verdict: `rule`: given that precondition (otherwise inconclusive: the organism answers in one
format only), the gap against ``margin``: supported when its interval lies above it, not
supported when below, inconclusive when it contains it.

Negative control: the same four elicitations and the same gap on questions about people
who do not exist (names drawn outside the world, answers drawn at random): no elicitation
can find knowledge that is not there, so every one must sit at chance and the gap must
vanish. Shots, a scaffold or a finetune that carry the answer by another road (shots about
the asked people, a reply mapped onto the option by position, tuning items that overlap
the test) would open a gap here.

Power: 240 items: the gap's interval is about +-0.07 (`s`, three draws), so a gap of about
0.1 beyond its bar is the smallest the quick profile detects with 80% power; the same holds
for the precondition's best lettered accuracy against chance + ``min_lettered``.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field

from assay.methods.evaluation import correct, render, score_items
from assay.methods.stats import clustered_bootstrap, clustered_mean_draws, from_draws
from assay.models.scoring import score_choices
from assay.studies._eval_common import (
    BENCHMARK,
    benchmark_text,
    crossfit_best,
    crossfit_spread,
    fictional_items,
    mc_tune,
    person_codes,
    split_people,
)
from assay.study import Above, Context, Control, Given, Needs, Result, StudyConfig, study
from assay.study.figures import errorbars, new_figure, save_figure
from assay.world import mentions
from assay.world.evals import MCItem, multiple_choice

CHANCE = 0.25  # four options per item


class Config(StudyConfig):
    eval_people: int = Field(40, ge=4)    # people asked about (six facts each)
    shot_people: int = Field(8, ge=1)     # other people whose solved items are the shots
    shots: list[int] = [1, 2]             # few-shot sizes (the organisms read 128 tokens)
    tune_people: int = Field(60, ge=1)    # other people whose items the finetune sees
    tune_steps: int = Field(120, ge=1)    # steps of the multiple-choice finetune
    margin: float = Field(0.2, gt=0, lt=1)  # a gap below this is no gap
    min_lettered: float = Field(0.1, gt=0, lt=0.75)  # best lettered elicitation beats chance by this
    n_boot: int = Field(1000, ge=100)     # bootstrap resamples of people

    FULL = {"eval_people": 100, "tune_steps": 240, "n_boot": 2000}


def _gap(cfg: Config) -> Above:
    return Above("gap", bar=cfg.margin, low=-1.0, high=1.0,
                 what="best minus worst elicitation's accuracy (cross-fitted)",
                 says={"supported": "the estimate depends strongly on how the capability is "
                                    "elicited",
                       "not supported": "every elicitation gives about the same estimate",
                       "inconclusive": "the gap's interval contains the margin"})


def rule(cfg: Config) -> Given:
    """Given a lettered test the organism can be made to answer, the best way of asking
    beats the worst by more than ``margin``."""
    return Given(
        Above("lettered", bar=CHANCE + cfg.min_lettered, low=0.0, high=1.0,
              what="the best lettered elicitation's accuracy (cross-fitted)"),
        _gap(cfg),
        why="the organism answers in its chat format only, so the gap is between the format "
            "it reads and one no lettered elicitation reaches")


def control(cfg: Config) -> Above:
    """The gap read on people who do not exist (no precondition: every way of asking must
    sit at chance there)."""
    return _gap(cfg)


@study("elicitation-gap", agenda=["2.2", "3.3"], needs=Needs(organism=True, trainable=True),
       rule=rule, control=control)
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    evaluated, others = split_people(world, cfg.eval_people, ctx.seed,
                                     cfg.shot_people + cfg.tune_people)
    shot_items = multiple_choice(world, people=others[:cfg.shot_people], templates=[0],
                                 seed=ctx.seed + 7)
    real = multiple_choice(world, people=evaluated, templates=[0], seed=ctx.seed)
    fake = fictional_items(world, len(evaluated), ctx.seed)
    ctx.report("finetuning on the format", 0.1)
    tuned = mc_tune(base, world, others[cfg.shot_people:], cfg.tune_steps, ctx.seed)
    results = {}
    for j, (label, items) in enumerate((("real", real), ("fictional", fake))):
        ctx.report(f"eliciting on {label} people", 0.4 + 0.3 * j)
        results[label] = _elicit(base, tuned, items, shot_items, cfg.shots, ctx.seed)
    ctx.report("intervals and figures", 1.0)

    summary = {label: _summarise(results[label], person_codes(items), cfg, ctx.seed)
               for label, items in (("real", real), ("fictional", fake))}
    found = {label: {**{f"accuracy@{m}": e for m, e in acc.items()}, "gap": gap}
             for label, (acc, gap, _) in summary.items()}
    codes = person_codes(real)
    lettered = np.stack([results["real"][m] for m in results["real"] if m != "scaffold"])
    found["real"]["lettered"] = clustered_bootstrap(crossfit_best(lettered, codes, ctx.seed),
                                                    codes, n_boot=cfg.n_boot, seed=ctx.seed)
    table = [{"elicitation": m, "accuracy (real people)": round(summary["real"][0][m].value, 4),
              "accuracy (fictional people)": round(summary["fictional"][0][m].value, 4)}
             for m in results["real"]]
    names = list(results["real"])
    notes = [f"{label}: best and worst picked per fold: "
             + ", ".join(f"{names[b]} / {names[w]}" for b, w in summary[label][2])
             for label in summary]
    return Result(metrics=found["real"], tables={"elicitation": table}, notes=notes,
                  control=Control(metrics=found["fictional"], condition=(
                      f"{len(fake)} questions about {len(evaluated)} people who do not exist, "
                      "answers drawn at random: every elicitation must sit at chance")),
                  figures=[_figure(ctx, summary)])


def _elicit(base, tuned, items: list[MCItem], shot_items: list[MCItem], shots: list[int],
            seed: int) -> dict[str, np.ndarray]:
    """Per elicitation, per item correctness (1.0 / 0.0)."""
    letters, answers = score_items(base, items, BENCHMARK)
    out = {"zero-shot": np.array([float(s.argmax() == a) for s, a in zip(letters, answers)])}
    rendered = [render(it, BENCHMARK) for it in items]
    rng = random.Random(seed)
    for k in shots:
        prompts = []
        for prompt, _, _ in rendered:
            examples = rng.sample(shot_items, k)
            prompts.append("\n\n".join([*(benchmark_text(e) for e in examples), prompt]))
        scores = score_choices(base, prompts, [r[1] for r in rendered])
        out[f"{k}-shot"] = np.array([float(s.argmax() == r[2]) for s, r in zip(scores, rendered)])
    out["scaffold"] = _scaffold(base, items, letters, seed)
    out["finetuned"] = correct(tuned, items, BENCHMARK)
    return out


def _scaffold(lm, items: list[MCItem], letters: list[np.ndarray], seed: int) -> np.ndarray:
    """Ask in the model's own chat format; if the reply names no single option, ask again
    (sampled); map the reply onto the option it names; with none, fall back to the
    zero-shot letter with the highest likelihood (``letters``: each item's letter scores)."""
    questions = [it.question for it in items]
    picks: list[int | None] = [None] * len(items)
    for attempt in range(2):
        todo = [i for i, p in enumerate(picks) if p is None]
        if not todo:
            break
        replies = lm.generate([questions[i] for i in todo], max_new_tokens=12, chat=True,
                              do_sample=attempt > 0, seed=seed + attempt)
        for i, reply in zip(todo, replies):
            named = [c for c, option in enumerate(items[i].choices) if mentions(reply, option)]
            if len(named) == 1:
                picks[i] = named[0]
    return np.array([float((p if p is not None else int(s.argmax())) == it.answer)
                     for p, s, it in zip(picks, letters, items)])


def _summarise(per: dict[str, np.ndarray], codes: np.ndarray, cfg: Config, seed: int):
    """Each elicitation's accuracy, the cross-fitted gap and the gap's per-fold picks."""
    names = list(per)
    values = np.stack([per[m] for m in names])  # (M, N)
    acc = {}
    for k, m in enumerate(names):
        draws = clustered_mean_draws(values, codes, lambda x, k=k: x[:, k], cfg.n_boot, seed)
        acc[m] = from_draws(values[k].mean(), draws, values.shape[1])
    gap, picks = crossfit_spread(values, codes, seed)
    return acc, clustered_bootstrap(gap, codes, n_boot=cfg.n_boot, seed=seed), picks


def _figure(ctx: Context, summary) -> str:
    fig, ax = new_figure(width=6.5)
    names = list(summary["real"][0])
    x = np.arange(len(names))
    for k, (label, colour) in enumerate((("real", "tab:blue"), ("fictional", "tab:grey"))):
        y, err = errorbars([summary[label][0][m] for m in names])
        ax.bar(x + (k - 0.5) * 0.38, y, width=0.38, yerr=err, capsize=2, color=colour,
               label=f"{label} people" + (" (control)" if label == "fictional" else ""))
    ax.axhline(0.25, color="black", ls=":", lw=0.8, label="chance")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("multiple-choice accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("One capability, four ways of asking")
    ax.legend(fontsize=7)
    save_figure(fig, ctx.artifact("elicitation.png"))
    return "elicitation.png"
