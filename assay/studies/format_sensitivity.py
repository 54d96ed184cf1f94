"""How a multiple-choice question is written moves accuracy more than the models differ (3.3).

Claim (Sclar et al. 2023, arXiv 2310.11324, found formatting alone moving accuracy by up
to 76 points): semantically equivalent prompt formats (frame, shown or hidden options,
option labels, field-name casing, separators, option order) spread a model's accuracy
by more than the gap between two models, so a ranking read off one format can flip.

Setup: the same items about people's facts, rendered in the default format (the
organisms' chat format, options scored as answers) and in formats drawn at random from
the grid in `assay.methods.evaluation`. Two organisms: the base organism and the same
organism after a short finetune on lettered multiple-choice items about other people (as
a model tuned on a benchmark's format would be). Per organism, spread = best minus worst
format's accuracy; gap = the organisms' accuracy difference in the default format; both
with intervals that resample whole people across all formats at once. Verdict: supported
when each organism's spread exceeds the gap, by the intervals.

Negative control: formats that change only what the model never sees (the order of
options that are scored but not shown) must leave accuracy exactly unchanged.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.evaluation import Format, correct, format_grid
from assay.methods.stats import Estimate
from assay.report.figures import new_figure, save_figure
from assay.studies import Context, Control, Needs, Result, StudyConfig, Verdict, study
from assay.studies._eval_common import cluster_boot, estimate, mc_tune, person_codes, split_people
from assay.world.evals import multiple_choice


class Config(StudyConfig):
    n_people: int = Field(40, ge=4)        # people asked about (6 facts x 3 wordings each)
    n_formats: int = Field(16, ge=2)       # formats drawn, the default included
    tune_people: int = Field(60, ge=1)     # other people whose items tune the second organism
    tune_steps: int = Field(40, ge=1)      # steps of that multiple-choice finetune
    n_boot: int = Field(1000, ge=100)

    FULL = {"n_people": 100, "n_formats": 48, "tune_steps": 80, "n_boot": 2000}


@study("format-sensitivity", agenda=["3.3"], needs=Needs(trainable=True))
def run(cfg: Config, ctx: Context) -> Result:
    world_name = ctx.organism_recipe("format-sensitivity", "its items are the organism's world")
    world, base = ctx.world(world_name), ctx.lm()
    people, others = split_people(world, cfg.n_people, ctx.seed, cfg.tune_people)
    items = multiple_choice(world, people=people, seed=ctx.seed)
    ctx.report("tuning the second organism on lettered items", 0.0)
    models = {"base": base, "MC-tuned": mc_tune(base, world, others, cfg.tune_steps, ctx.seed)}
    formats = format_grid(cfg.n_formats, seed=ctx.seed)
    acc: dict[str, np.ndarray] = {}  # model -> (F, N) per-format correctness
    for j, (label, lm) in enumerate(models.items()):
        rows = []
        for i, fmt in enumerate(formats):
            ctx.report(f"{label}: format {i + 1}/{len(formats)}",
                       0.1 + 0.8 * (j * len(formats) + i) / (2 * len(formats)))
            rows.append(correct(lm, items, fmt))
        acc[label] = np.stack(rows)
    ctx.report("control: unseen option orders", 0.9)
    unseen = [Format(rotate=r) for r in range(len(items[0].choices))]
    control_rows = np.stack([correct(base, items, fmt) for fmt in unseen])
    ctx.report("verdict and figures", 1.0)

    codes = person_codes(items)
    both = np.concatenate([acc["base"], acc["MC-tuned"]])  # (2F, N)
    nf = len(formats)
    spreads = {}
    for k, label in enumerate(models):
        sl = slice(k * nf, (k + 1) * nf)
        draws = cluster_boot(both, codes, lambda m, sl=sl: m[:, sl].max(1) - m[:, sl].min(1),
                             cfg.n_boot, ctx.seed)
        means = acc[label].mean(1)
        spreads[label] = estimate(means.max() - means.min(), draws, len(items))
    gap_draws = cluster_boot(both, codes, lambda m: np.abs(m[:, 0] - m[:, nf]), cfg.n_boot,
                             ctx.seed)
    gap = estimate(abs(acc["base"][0].mean() - acc["MC-tuned"][0].mean()), gap_draws, len(items))
    diff = acc["base"].mean(1) - acc["MC-tuned"].mean(1)  # (F,) base minus tuned per format
    flips = float(np.mean(np.sign(diff[1:]) != np.sign(diff[0])))

    metrics: dict[str, Estimate] = {f"spread@{m}": e for m, e in spreads.items()}
    metrics["gap@default"] = gap
    for label in models:
        best = int(acc[label].mean(1).argmax())
        metrics[f"accuracy@{label}/default"] = _acc(acc[label][0], codes, cfg, ctx.seed)
        metrics[f"accuracy@{label}/best"] = _acc(acc[label][best], codes, cfg, ctx.seed)
    table = [{"format": f.name, **{f"accuracy ({m})": round(float(acc[m][i].mean()), 4)
                                   for m in models}}
             for i, f in enumerate(formats)]
    verdict = _verdict(spreads, gap, flips, len(formats) - 1)
    control_spread = float(np.ptp(control_rows.mean(1)))
    control = _control(control_spread, gap, len(unseen))
    notes = [f"ranking reversed against the default format in {flips:.0%} of the other "
             f"{len(formats) - 1} formats"]
    return Result(metrics=metrics, tables={"formats": table}, verdict=verdict, control=control,
                  figures=[_figure(ctx, formats, acc)], notes=notes)


def _acc(correct_: np.ndarray, codes: np.ndarray, cfg: Config, seed: int) -> Estimate:
    draws = cluster_boot(correct_[None], codes, lambda m: m[:, 0], cfg.n_boot, seed)
    return estimate(correct_.mean(), draws, correct_.size)


def _verdict(spreads: dict[str, Estimate], gap: Estimate, flips: float, n_other: int) -> Verdict:
    test = ("each organism's spread (best minus worst format) above the gap between the "
            "organisms in the default format, by their 95% intervals (people resampled)")
    parts = "; ".join(f"{m} spread {e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"
                      for m, e in spreads.items())
    head = (f"{parts}; gap in the default format {gap.value:.3f} [{gap.ci_low:.3f}, "
            f"{gap.ci_high:.3f}]; the ranking flips in {flips:.0%} of {n_other} other formats")
    lows = min(e.ci_low for e in spreads.values())
    highs = max(e.ci_high for e in spreads.values())
    if lows > gap.ci_high:
        status, tail = "supported", "formatting moves accuracy more than the models differ"
    elif highs < gap.ci_low:
        status, tail = "not supported", "the models differ more than any format moves them"
    else:
        status, tail = "inconclusive", "the spread and gap intervals overlap"
    return Verdict(status=status, test=test, statement=f"{head}: {tail}.")


def _control(spread: float, gap: Estimate, n: int) -> Control:
    test = ("formats that differ only in the order of options the model never sees: their "
            "spread must be zero, so the claim's test (spread above the gap) must fail")
    ok = spread == 0.0
    statement = (f"{n} orders of hidden options give a spread of {spread:.4f} "
                 + ("(identical accuracies): the formats' effect is the model's, not the "
                    "scorer's." if ok else "where it must be 0: scoring depends on option "
                    "order, which is a bug."))
    status = "not supported" if ok or spread < gap.ci_low else "supported"
    return Control(verdict=Verdict(status=status, test=test, statement=statement),
                   metrics={"spread@hidden-option orders": Estimate(
                       value=spread, ci_low=spread, ci_high=spread, n=n, method="exact")})


def _figure(ctx: Context, formats: list[Format], acc: dict[str, np.ndarray]) -> str:
    fig, axes = new_figure(width=5.8, height=4.6, ncols=2)
    order = np.argsort(-acc["base"].mean(1))
    x = np.arange(len(formats))
    for label, marker in zip(acc, ("o", "s")):
        axes[0].plot(x, acc[label].mean(1)[order], marker=marker, lw=1, label=label)
    axes[0].set_xticks(x, [formats[i].name for i in order], rotation=70, ha="right", fontsize=6)
    axes[0].axhline(0.25, color="grey", lw=0.8, ls=":", label="chance")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("Accuracy by format (sorted by the base organism)")
    axes[0].legend(fontsize=7)
    a, b = (acc[m].mean(1) for m in acc)
    axes[1].scatter(a, b, s=18)
    axes[1].scatter(a[:1], b[:1], s=60, facecolors="none", edgecolors="red", label="default format")
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    names = list(acc)
    axes[1].set_xlabel(f"accuracy ({names[0]})")
    axes[1].set_ylabel(f"accuracy ({names[1]})")
    axes[1].set_xlim(0, 1.02)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("One point per format: above the line, the tuned model wins")
    axes[1].legend(fontsize=7)
    save_figure(fig, ctx.artifact("formats.png"))
    return "formats.png"
