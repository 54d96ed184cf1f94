"""Evaluation error bars are too narrow when items are correlated, and comparisons should be
paired (3.3).

Claim (Miller 2024, arXiv 2411.00640): items that share an entity or a question template
are not independent, so the usual standard error sqrt(p(1-p)/n) understates the
uncertainty and cluster-robust standard errors are materially larger; and when two
models answer the same items, a paired comparison (the standard error of the per-item
differences) detects differences that an unpaired one, which treats the two scores as
independent, misses.

Setup: multiple-choice items about people's facts, every fact asked with every question
template, answered by the organism and by a second model: by default the organism after a
short finetune on lettered multiple-choice items about other people, which moves its
accuracy by a few points (``--set other=@pretrain`` or an organism name compares another). Standard errors of accuracy: naive, clustered by person and
clustered by template, with the ratio's interval from resampling people. Paired against
unpaired: many random subsets of people, each a small evaluation; the share of subsets in
which each test (two-sided, 5%) finds the difference between the organisms.

Negative control: clusters of the same sizes drawn at random, ignoring who and what the
items are about; their clustered standard error must match the naive one.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.evaluation import correct, mean_se, paired_se
from assay.methods.stats import Estimate, wilson
from assay.report.figures import errorbars, new_figure, save_figure
from assay.studies import Context, Control, Needs, Result, StudyConfig, Verdict, study
from assay.studies._eval_common import mc_tune, person_codes, split_people
from assay.world.evals import multiple_choice


class Config(StudyConfig):
    n_people: int = Field(120, ge=10)      # people asked about (6 facts x 3 wordings each)
    other: str = "tuned"                   # second model: "tuned", a stage suffix or an organism
    tune_people: int = Field(60, ge=1)     # "tuned": other people whose lettered items it learns
    tune_steps: int = Field(40, ge=1)      # "tuned": finetuning steps
    subset_people: int = Field(20, ge=2)   # people per small evaluation in the power test
    n_subsets: int = Field(400, ge=20)
    ratio_margin: float = Field(1.25, gt=1)  # clustered / naive SE above this is "material"
    n_boot: int = Field(1000, ge=100)

    FULL = {"n_people": 200, "n_subsets": 2000, "n_boot": 2000}


@study("error-bars", agenda=["3.3"], needs=Needs(trainable=True))
def run(cfg: Config, ctx: Context) -> Result:
    name = ctx.organism_recipe("error-bars", "its items are the organism's world")
    world = ctx.world(name)
    n = min(cfg.n_people, len(world.people()) - cfg.tune_people)
    people, others = split_people(world, n, ctx.seed, cfg.tune_people)
    if cfg.other == "tuned":
        ctx.report("tuning the second organism", 0.0)
        other = f"{name} + finetune"
        second = mc_tune(ctx.lm(), world, others, cfg.tune_steps, ctx.seed)
    else:
        other = f"{name}{cfg.other}" if cfg.other.startswith("@") else cfg.other
        second = ctx.organism(other)
    models = {name: ctx.lm(), other: second}
    items = multiple_choice(world, people=people, seed=ctx.seed)
    scores = {}
    for j, (label, lm) in enumerate(models.items()):
        ctx.report(f"scoring {label}", 0.4 * j)
        scores[label] = correct(lm, items)
    ctx.report("standard errors and power", 0.8)

    x = scores[name]
    by_person = person_codes(items)
    by_template = _codes(np.array([it.template_id for it in items]))
    rng = np.random.default_rng(ctx.seed)
    shuffled = rng.permutation(by_person)  # the same cluster sizes, random membership
    ses = {"naive": mean_se(x), "clustered by person": mean_se(x, by_person),
           "clustered by template": mean_se(x, by_template),
           "random clusters (control)": mean_se(x, shuffled)}
    ratio = _ratio_estimate(x, by_person, cfg, ctx.seed)
    control_ratio = _ratio_estimate(x, shuffled, cfg, ctx.seed)
    a, b = scores[name], scores[other]
    power = _power(a, b, by_person, cfg, rng)

    diff = float(a.mean() - b.mean())
    paired, unpaired = paired_se(a, b, by_person)
    metrics: dict[str, Estimate] = {
        "accuracy": Estimate(value=float(x.mean()), ci_low=float(x.mean() - 1.96 * ses["clustered by person"]),
                             ci_high=float(x.mean() + 1.96 * ses["clustered by person"]),
                             n=x.size, method="clustered SE (person)"),
        "se_ratio@person": ratio,
        "difference": Estimate(value=diff, ci_low=diff - 1.96 * paired, ci_high=diff + 1.96 * paired,
                               n=x.size, method="paired, clustered SE (person)"),
        "power@paired": power["paired"], "power@unpaired": power["unpaired"],
    }
    table = [{"standard error": k, "value": round(v, 5), "ratio to naive": round(v / ses["naive"], 3)}
             for k, v in ses.items()]
    comparison = [{"test": "paired", "SE of difference (all items)": round(paired, 5),
                   "share of subsets finding it": round(power["paired"].value, 4)},
                  {"test": "unpaired", "SE of difference (all items)": round(unpaired, 5),
                   "share of subsets finding it": round(power["unpaired"].value, 4)}]
    return Result(metrics=metrics, tables={"standard_errors": table, "comparison": comparison},
                  verdict=_verdict(ratio, power, diff, paired, unpaired, cfg, name, other),
                  control=_control(control_ratio, cfg),
                  figures=[_figure(ctx, ses, power, a, b, by_person, name, other)])


def _ratio_estimate(x: np.ndarray, clusters: np.ndarray, cfg: Config, seed: int) -> Estimate:
    """Clustered over naive standard error, its interval from resampling whole people."""
    point = mean_se(x, clusters) / mean_se(x)
    people = _codes(clusters)
    g = people.max() + 1
    members = [np.flatnonzero(people == c) for c in range(g)]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(cfg.n_boot // 4):  # each draw recomputes both errors on a resample
        pick = rng.integers(0, g, g)
        idx = np.concatenate([members[c] for c in pick])
        keys = np.concatenate([np.full(members[c].size, k) for k, c in enumerate(pick)])
        xs = x[idx]
        if xs.std() == 0:
            continue
        draws.append(mean_se(xs, keys) / mean_se(xs))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Estimate(value=float(point), ci_low=float(min(lo, point)), ci_high=float(max(hi, point)),
                    n=x.size, method="bootstrap-clustered")


def _codes(clusters: np.ndarray) -> np.ndarray:
    """Integer codes 0..G-1 of any cluster keys."""
    _, codes = np.unique(clusters, return_inverse=True)
    return codes


def _power(a: np.ndarray, b: np.ndarray, people: np.ndarray, cfg: Config, rng) -> dict[str, Estimate]:
    """Share of random subsets of people in which each test rejects 'no difference'."""
    g = people.max() + 1
    k = min(cfg.subset_people, g)
    hits = {"paired": 0, "unpaired": 0}
    for _ in range(cfg.n_subsets):
        chosen = np.isin(people, rng.choice(g, k, replace=False))
        xa, xb, keys = a[chosen], b[chosen], people[chosen]
        d = xa.mean() - xb.mean()
        if d == 0:
            continue
        se_p, se_u = paired_se(xa, xb, keys)
        hits["paired"] += bool(se_p > 0 and abs(d) / se_p > 1.96)
        hits["unpaired"] += bool(se_u > 0 and abs(d) / se_u > 1.96)
    return {t: wilson(h, cfg.n_subsets) for t, h in hits.items()}


def _verdict(ratio: Estimate, power, diff, paired, unpaired, cfg: Config, name, other) -> Verdict:
    p, u = power["paired"], power["unpaired"]
    test = (f"clustered (person) over naive SE above {cfg.ratio_margin:g} by its interval, and the "
            "paired test's detection rate above the unpaired one's (Wilson intervals apart)")
    head = (f"clustered SE is {ratio.value:.2f}x the naive one [{ratio.ci_low:.2f}, "
            f"{ratio.ci_high:.2f}]; {name} minus {other} = {diff:+.4f} (SE paired {paired:.4f}, "
            f"unpaired {unpaired:.4f}); on subsets of {cfg.subset_people} people the paired test "
            f"finds it in {p.value:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}], the unpaired in "
            f"{u.value:.2f} [{u.ci_low:.2f}, {u.ci_high:.2f}]")
    clustered = ratio.ci_low > cfg.ratio_margin
    pairing = p.ci_low > u.ci_high
    if clustered and pairing:
        status, tail = "supported", "independent-item error bars are too narrow and pairing pays"
    elif ratio.ci_high < cfg.ratio_margin or p.ci_high < u.ci_low:
        status, tail = "not supported", "one half of the claim fails"
    else:
        status, tail = "inconclusive", ("only one half holds" if clustered or pairing
                                        else "the intervals straddle the thresholds")
    return Verdict(status=status, test=test, statement=f"{head}: {tail}.")


def _control(ratio: Estimate, cfg: Config) -> Control:
    test = (f"clusters of the same sizes with random members: the SE ratio must not exceed "
            f"{cfg.ratio_margin:g}")
    head = f"random clusters give {ratio.value:.2f}x the naive SE [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]"
    if ratio.ci_low > cfg.ratio_margin:
        status, tail = "supported", "inflation without real clusters: the estimator is biased"
    elif ratio.ci_high < cfg.ratio_margin:
        status, tail = "not supported", "clustering only matters where items are related"
    else:
        status, tail = "inconclusive", "the interval straddles the margin"
    return Control(verdict=Verdict(status=status, test=test, statement=f"{head}: {tail}."),
                   metrics={"se_ratio@random clusters": ratio})


def _figure(ctx: Context, ses, power, a, b, people, name, other) -> str:
    fig, axes = new_figure(width=5.8, height=4.6, ncols=2)
    labels = list(ses)
    axes[0].bar(range(len(labels)), [ses[k] for k in labels],
                color=["tab:grey", "tab:blue", "tab:purple", "tab:olive"])
    axes[0].set_xticks(range(len(labels)), [k.replace(" (", "\n(") for k in labels], fontsize=7)
    axes[0].set_ylabel("standard error of accuracy")
    axes[0].set_title(f"{name}: one accuracy, four error bars")
    ests = [power["paired"], power["unpaired"]]
    y, err = errorbars(ests)
    axes[1].bar([0, 1], y, yerr=err, capsize=3, color=["tab:green", "tab:orange"])
    axes[1].set_xticks([0, 1], ["paired", "unpaired"])
    axes[1].set_ylim(0, 1.02)
    axes[1].set_ylabel("share of small evaluations that detect it")
    axes[1].set_title(f"{name} vs {other}: {a.mean() - b.mean():+.3f} on all items")
    save_figure(fig, ctx.artifact("error_bars.png"))
    return "error_bars.png"
