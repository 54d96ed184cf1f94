"""How a multiple-choice question is written moves accuracy more than the models differ (3.3).

Claim (Sclar et al. 2023, arXiv 2310.11324, found formatting alone moving accuracy by up
to 76 points): semantically equivalent prompt formats (frame, shown or hidden options,
option labels, field-name casing, separators, option order) spread a model's accuracy
by more than the gap between two models, so a ranking read off one format can flip.

Setup: the same items about people's facts, rendered in the default format (the
organisms' chat format, options scored as answers) and in formats drawn at random from
the grid in `assay.methods.evaluation`. Two organisms that differ for real: the base
organism and another training run of its recipe (`other_draw`: ``s`` is compared with
``s~1``, ``s~1`` with ``s~2``, ``s~2`` with ``s``), so the gap between them is whatever two
draws of one recipe differ by, not a difference built in. Per organism, spread = the best
format's accuracy minus the worst's, cross-fitted: the best and worst formats are picked on
one half of the people and measured on the other, both ways round, so that formats which do
not differ give a spread centred on zero (the raw best minus worst of many noisy accuracies
would not). Gap = the organisms' accuracy difference in the default format, in absolute
value. Excess = spread minus gap, per organism, with intervals that resample whole people
across every format and both organisms at once.

The built-in organisms were trained to answer in their chat format only, so every other
format may sit at chance and the spread then measures that, not sensitivity to wording. The
rule therefore first asks that the base organism read some format other than the default:
the best other format (picked on one half of the people, measured on the other) must beat
chance by ``min_other``. Until an organism trained on several answer formats exists, the
verdict on the built-in organisms is expected to be inconclusive for that reason.

Verdict: `rule`: given that precondition (otherwise inconclusive: the organism answers in one
format only), each organism's excess against zero (all parts must hold): supported when both
intervals lie above zero, not supported when either lies below it, inconclusive otherwise.

Negative control: the same test (both organisms, every format, cross-fitted spread minus
gap) on questions about people who do not exist, whose answers are drawn at random. No
format can find knowledge that is not there, so every format must sit at chance and the
excess must not clear zero. A renderer or scorer that lets the answer through in some
formats (the true option's position, label or text marked, the answer index read by the
scorer), or a spread statistic that manufactures a spread out of noise, fires it. (The old
control, reordering options the model never sees, could not fail: hidden options are
scored one by one, so their order cannot matter.)

Power: 720 item-format readings per organism, people resampled: the excess interval is about
+-0.06 to 0.09, so an excess of about 0.1 is the smallest the quick profile detects with 80%
power. The precondition reads 720 items about 40 people (interval about +-0.06), so a best
other format about 0.15 above chance is detected.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.evaluation import Format, correct, format_grid
from assay.methods.stats import Estimate, clustered_bootstrap, clustered_mean_draws, from_draws
from assay.studies._eval_common import (
    crossfit_best,
    crossfit_spread,
    fictional_items,
    other_draw,
    person_codes,
    split_people,
)
from assay.study import Above, AllOf, Context, Control, Given, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure
from assay.world.evals import MCItem, multiple_choice

MODELS = ("base", "other draw")
CHANCE = 0.25  # four options per item


class Config(StudyConfig):
    n_people: int = Field(40, ge=4)        # people asked about (6 facts x 3 wordings each)
    control_people: int = Field(40, ge=4)  # people who do not exist (6 questions each), control
    n_formats: int = Field(16, ge=2)       # formats drawn, the default included
    min_other: float = Field(0.1, gt=0, lt=0.75)  # the best other format beats chance by this
    n_boot: int = Field(1000, ge=100)      # bootstrap resamples of people

    FULL = {"n_people": 100, "control_people": 100, "n_formats": 48, "n_boot": 2000}


def _excess(cfg: Config) -> AllOf:
    parts = [Above(f"excess@{m}", bar=0.0, low=-1.0, high=1.0,
                   what=f"{m} organism's format spread minus the organisms' gap")
             for m in MODELS]
    return AllOf(*parts, says={
        "supported": "formatting moves accuracy more than the organisms differ",
        "not supported": "the organisms differ more than formatting moves one of them",
        "inconclusive": "an interval contains zero: spread and gap are not told apart"})


def rule(cfg: Config) -> Given:
    """Given an organism that reads more than one format, each organism's format spread
    exceeds the gap between the organisms."""
    return Given(
        Above("other_format@base", bar=CHANCE + cfg.min_other, low=0.0, high=1.0,
              what="the base organism's accuracy in its best non-default format "
                   "(cross-fitted)"),
        _excess(cfg),
        why="the organism answers in one format only, so a spread across formats measures "
            "that, not format sensitivity")


def control(cfg: Config) -> AllOf:
    """The excess read on people who do not exist (no precondition: there every format must
    sit at chance)."""
    return _excess(cfg)


@study("format-sensitivity", agenda=["3.3"], needs=Needs(organism=True), rule=rule,
       organisms=lambda cfg, model: [other_draw(model.organism)],
       control=control)
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    people, _ = split_people(world, cfg.n_people, ctx.seed)
    items = multiple_choice(world, people=people, seed=ctx.seed)
    fake = fictional_items(world, cfg.control_people, ctx.seed)
    other = other_draw(ctx.model.organism)
    ctx.report(f"loading the other draw, {other}", 0.0)
    models = dict(zip(MODELS, (base, ctx.organism(other))))
    formats = format_grid(cfg.n_formats, seed=ctx.seed)
    acc: dict[str, dict[str, np.ndarray]] = {"real": {}, "fictional": {}}  # -> model -> (F, N)
    steps = 2 * len(models) * len(formats)
    done = 0
    for kind, asked in (("real", items), ("fictional", fake)):
        for label, lm in models.items():
            rows = []
            for i, fmt in enumerate(formats):
                ctx.report(f"{label}, {kind} people: format {i + 1}/{len(formats)}",
                           0.1 + 0.85 * done / steps)
                rows.append(correct(lm, asked, fmt))
                done += 1
            acc[kind][label] = np.stack(rows)
    ctx.report("intervals and figures", 1.0)

    metrics, picks = _test(acc["real"], items, cfg, ctx.seed)
    control, _ = _test(acc["fictional"], fake, cfg, ctx.seed)
    codes = person_codes(items)
    metrics["other_format@base"] = clustered_bootstrap(
        crossfit_best(acc["real"]["base"][1:], codes, ctx.seed), codes, n_boot=cfg.n_boot,
        seed=ctx.seed)
    for label in models:
        best = int(acc["real"][label].mean(1).argmax())
        metrics[f"accuracy@{label}/default"] = _acc(acc["real"][label][0], items)
        metrics[f"accuracy@{label}/best"] = _acc(acc["real"][label][best], items)
        means = acc["real"][label].mean(1)
        raw = clustered_mean_draws(acc["real"][label], codes, lambda m: m.max(1) - m.min(1), cfg.n_boot,
                           ctx.seed)
        metrics[f"raw_spread@{label}"] = from_draws(means.max() - means.min(), raw, len(items))
    table = [{"format": f.name,
              **{f"accuracy ({m})": round(float(acc["real"][m][i].mean()), 4) for m in models},
              **{f"accuracy ({m}, fictional)": round(float(acc["fictional"][m][i].mean()), 4)
                 for m in models}}
             for i, f in enumerate(formats)]
    diff = acc["real"]["base"].mean(1) - acc["real"][MODELS[1]].mean(1)  # (F,) per format
    flips = float(np.mean(np.sign(diff[1:]) != np.sign(diff[0])))
    above = int(np.sum(acc["real"]["base"][1:].mean(1) > CHANCE + cfg.min_other))
    notes = [f"the other draw is {other}",
             f"ranking reversed against the default format in {flips:.0%} of the other "
             f"{len(formats) - 1} formats",
             f"the base organism beats chance by {cfg.min_other} in {above} of the "
             f"{len(formats) - 1} non-default formats (raw, not cross-fitted)",
             *(f"{m}: best and worst formats picked per fold: "
               + ", ".join(f"{formats[b].name} / {formats[w].name}" for b, w in picks[m])
               for m in models)]
    return Result(metrics=metrics, tables={"formats": table}, notes=notes,
                  control=Control(metrics=control, condition=(
                      f"{len(fake)} questions about {cfg.control_people} people who do not "
                      "exist, answers drawn at random: every format must sit at chance")),
                  figures=[_figure(ctx, formats, acc)])


def _test(acc: dict[str, np.ndarray], items: list[MCItem], cfg: Config,
          seed: int) -> tuple[dict[str, Estimate], dict[str, list[tuple[int, int]]]]:
    """Spread, gap and excess (spread minus gap) of both organisms on ``items``, every
    interval from the same resamples of whole people; and each organism's per-fold picks."""
    codes = person_codes(items)
    rows, picks = [], {}
    for label in MODELS:
        per_item, picks[label] = crossfit_spread(acc[label], codes, seed)
        rows.append(per_item)
    rows += [acc[label][0] for label in MODELS]  # default-format correctness
    values = np.stack(rows)  # (4, N): spread of each organism, then each one's default
    k = len(MODELS)

    def gap(m: np.ndarray) -> np.ndarray:
        return np.abs(m[:, k] - m[:, k + 1])

    means = values.mean(1)
    point_gap = abs(means[k] - means[k + 1])
    out = {"gap@default": from_draws(point_gap, clustered_mean_draws(values, codes, gap, cfg.n_boot, seed),
                                   len(items))}
    for j, label in enumerate(MODELS):
        spread = clustered_mean_draws(values, codes, lambda m, j=j: m[:, j], cfg.n_boot, seed)
        excess = clustered_mean_draws(values, codes, lambda m, j=j: m[:, j] - gap(m), cfg.n_boot, seed)
        out[f"spread@{label}"] = from_draws(means[j], spread, len(items))
        out[f"excess@{label}"] = from_draws(means[j] - point_gap, excess, len(items))
    return out, picks


def _acc(correct_: np.ndarray, items: list[MCItem]) -> Estimate:
    return clustered_bootstrap(correct_, [it.subject for it in items])


def _figure(ctx: Context, formats: list[Format], acc: dict[str, dict[str, np.ndarray]]) -> str:
    fig, axes = new_figure(width=5.8, height=4.6, ncols=2)
    real = acc["real"]
    order = np.argsort(-real["base"].mean(1))
    x = np.arange(len(formats))
    for label, marker in zip(real, ("o", "s")):
        axes[0].plot(x, real[label].mean(1)[order], marker=marker, lw=1, label=label)
    for label, marker in zip(acc["fictional"], ("o", "s")):
        axes[0].plot(x, acc["fictional"][label].mean(1)[order], marker=marker, lw=0.8,
                     color="grey", alpha=0.6, label=f"{label}, people who do not exist")
    axes[0].set_xticks(x, [formats[i].name for i in order], rotation=70, ha="right", fontsize=6)
    axes[0].axhline(0.25, color="black", lw=0.8, ls=":", label="chance")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("Accuracy by format (sorted by the base organism)")
    axes[0].legend(fontsize=7)
    a, b = (real[m].mean(1) for m in MODELS)
    axes[1].scatter(a, b, s=18)
    axes[1].scatter(a[:1], b[:1], s=60, facecolors="none", edgecolors="red", label="default format")
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    axes[1].set_xlabel(f"accuracy ({MODELS[0]})")
    axes[1].set_ylabel(f"accuracy ({MODELS[1]})")
    axes[1].set_xlim(0, 1.02)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("One point per format: above the line, the other draw wins")
    axes[1].legend(fontsize=7)
    save_figure(fig, ctx.artifact("formats.png"))
    return "formats.png"
