"""What an evaluation says a model can do depends on how hard it tries (2.2).

Claim: one capability, measured four ways, gets very different estimates: zero-shot,
few-shot (solved examples in the prompt), with a simple scaffold (ask the question
plainly, ask again if the reply names no option, map the reply onto the options), and
after a short finetune on the task's format. An evaluation that reports one of them
understates (or overstates) what the model can be made to do.

Setup: the capability is answering a lettered multiple-choice test about people's facts
(``Question: ... A. ... Answer: B``), facts the organism knows but a format it was never
trained on. Accuracy per elicitation on the same items, with intervals that resample
whole people; the gap is the best minus the worst elicitation, from the same resamples.
Verdict: supported when the gap's interval lies above ``margin``.

Negative control: the same four elicitations on questions about people who do not exist
(names drawn outside the world, answers drawn at random): no elicitation can find
knowledge that is not there, so every one must sit at chance and the gap must vanish.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field

from assay.methods.evaluation import correct, render, score_items
from assay.methods.stats import Estimate
from assay.models.scoring import score_choices
from assay.report.figures import errorbars, new_figure, save_figure
from assay.studies import Context, Control, Needs, Result, StudyConfig, Verdict, study
from assay.studies._eval_common import (
    BENCHMARK, benchmark_text, cluster_boot, estimate, mc_tune, person_codes, split_people,
)
from assay.world import World, mentions
from assay.world.evals import MCItem, multiple_choice
from assay.world.names import NameMaker
from assay.world.relations import RELATIONS


class Config(StudyConfig):
    eval_people: int = Field(40, ge=4)    # people asked about (six facts each)
    shot_people: int = Field(8, ge=1)     # other people whose solved items are the shots
    shots: list[int] = [1, 2]             # few-shot sizes (the organisms read 128 tokens)
    tune_people: int = Field(60, ge=1)    # other people whose items the finetune sees
    tune_steps: int = Field(40, ge=1)
    margin: float = Field(0.2, gt=0)      # a gap below this is no gap
    n_boot: int = Field(1000, ge=100)

    FULL = {"eval_people": 100, "tune_steps": 80, "n_boot": 2000}


@study("elicitation-gap", agenda=["2.2", "3.3"], needs=Needs(trainable=True))
def run(cfg: Config, ctx: Context) -> Result:
    name = ctx.organism_recipe("elicitation-gap", "its items and finetune come from the "
                               "organism's world")
    world, base = ctx.world(name), ctx.lm()
    evaluated, others = split_people(world, cfg.eval_people, ctx.seed,
                                     cfg.shot_people + cfg.tune_people)
    shot_items = multiple_choice(world, people=others[:cfg.shot_people], templates=[0],
                                 seed=ctx.seed + 7)
    real = multiple_choice(world, people=evaluated, templates=[0], seed=ctx.seed)
    fake = _fictional_items(world, len(evaluated), ctx.seed)
    ctx.report("finetuning on the format", 0.1)
    tuned = mc_tune(base, world, others[cfg.shot_people:], cfg.tune_steps, ctx.seed)
    results = {}
    for j, (label, items) in enumerate((("real", real), ("fictional", fake))):
        ctx.report(f"eliciting on {label} people", 0.4 + 0.3 * j)
        results[label] = _elicit(base, tuned, items, shot_items, cfg.shots, ctx.seed)
    ctx.report("verdict and figures", 1.0)

    metrics: dict[str, Estimate] = {}
    summary = {}
    for label, items in (("real", real), ("fictional", fake)):
        acc, gap = _summarise(results[label], person_codes(items), cfg, ctx.seed)
        summary[label] = (acc, gap)
        prefix = "" if label == "real" else "control/"
        metrics.update({f"{prefix}accuracy@{m}": e for m, e in acc.items()})
        metrics[f"{prefix}gap"] = gap
    table = [{"elicitation": m, "accuracy (real people)": round(summary["real"][0][m].value, 4),
              "accuracy (fictional people)": round(summary["fictional"][0][m].value, 4)}
             for m in results["real"]]
    control_metrics = {k[len("control/"):]: v for k, v in metrics.items() if k.startswith("control/")}
    metrics = {k: v for k, v in metrics.items() if not k.startswith("control/")}
    return Result(metrics=metrics, tables={"elicitation": table},
                  verdict=_verdict(*summary["real"], cfg),
                  control=_control(*summary["fictional"], control_metrics, cfg),
                  figures=[_figure(ctx, summary)])


def _fictional_items(world: World, n_people: int, seed: int) -> list[MCItem]:
    """Items about ``n_people`` people who are not in the world, with random answers."""
    rng = random.Random(f"fictional-{seed}")
    names = NameMaker(rng)
    taken = set(world.entities)
    people = []
    while len(people) < n_people:
        name = names.person()
        if name not in taken and name not in people:
            people.append(name)
    objects = {r: sorted({f.object for f in world.facts if f.relation == r})
               for r in world.person_relations}
    items = []
    for person in people:
        for rel in world.person_relations:
            choices = rng.sample(objects[rel], 4)
            items.append(MCItem(id=f"fictional|{person}|{rel}", question=RELATIONS[rel]
                                .questions[0].format(s=person), choices=tuple(choices),
                                answer=rng.randrange(4), subject=person, relation=rel, template=0))
    return items


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
    names = list(per)
    values = np.stack([per[m] for m in names])  # (M, N)
    acc = {}
    for k, m in enumerate(names):
        draws = cluster_boot(values, codes, lambda x, k=k: x[:, k], cfg.n_boot, seed)
        acc[m] = estimate(values[k].mean(), draws, values.shape[1])
    means = values.mean(1)
    hi, lo = int(means.argmax()), int(means.argmin())
    draws = cluster_boot(values, codes, lambda x: x[:, hi] - x[:, lo], cfg.n_boot, seed)
    return acc, estimate(means[hi] - means[lo], draws, values.shape[1])


def _verdict(acc: dict[str, Estimate], gap: Estimate, cfg: Config) -> Verdict:
    best = max(acc, key=lambda m: acc[m].value)
    worst = min(acc, key=lambda m: acc[m].value)
    test = (f"best minus worst elicitation's accuracy on the same items (people resampled): "
            f"supported if its 95% interval lies above {cfg.margin:g}")
    head = ("; ".join(f"{m} {e.value:.2f}" for m, e in acc.items())
            + f"; gap {best} - {worst} = {gap.value:.3f} [{gap.ci_low:.3f}, {gap.ci_high:.3f}]")
    if gap.ci_low > cfg.margin:
        status, tail = "supported", "the estimate depends strongly on how the capability is elicited"
    elif gap.ci_high < cfg.margin:
        status, tail = "not supported", "every elicitation gives about the same estimate"
    else:
        status, tail = "inconclusive", "the gap's interval straddles the margin"
    return Verdict(status=status, test=test, statement=f"{head}: {tail}.")


def _control(acc: dict[str, Estimate], gap: Estimate, metrics, cfg: Config) -> Control:
    test = (f"the claim's test on people who do not exist: the gap must not exceed {cfg.margin:g}")
    head = ("on fictional people " + "; ".join(f"{m} {e.value:.2f}" for m, e in acc.items())
            + f" (chance 0.25); gap {gap.value:.3f} [{gap.ci_low:.3f}, {gap.ci_high:.3f}]")
    if gap.ci_low > cfg.margin:
        status, tail = "supported", "an elicitation 'finds' knowledge that does not exist"
    elif gap.ci_high < cfg.margin:
        status, tail = "not supported", "no elicitation beats chance where there is nothing to know"
    else:
        status, tail = "inconclusive", "the interval straddles the margin"
    return Control(verdict=Verdict(status=status, test=test, statement=f"{head}: {tail}."),
                   metrics=metrics)


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
