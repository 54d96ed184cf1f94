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
accuracy by a few points (``--set other=@pretrain`` or an organism name compares another).
Standard errors of accuracy: naive, clustered by person and clustered by template; the
ratio clustered (person) over naive has an interval from resampling people. Paired against
unpaired: many random subsets of people, each a small evaluation; in each, whether each
test (two-sided, 5%) finds the difference between the models. Power gain = the paired
test's detection share minus the unpaired one's, with a paired bootstrap over the subsets
(an interval for the Monte Carlo of subsets, not for new people: the subsets share people).
Beside power, each test's false-positive rate under a sign-flip null (each person's two
models swapped at random, which keeps pairs and clusters and removes any difference).

Verdict: `rule`, in two parts that must both hold: the SE ratio above ``ratio_margin``, and
the power gain above ``power_margin``, each by its interval: supported when both clear their
bars, not supported when either lies below, inconclusive otherwise. The power half is read
only where the models differ on all items (the paired interval of the difference excludes
zero); where they do not, no test has anything to find and that half is inconclusive.

Negative control: each half of the test where its effect must be absent. Clusters of the
same sizes drawn at random, ignoring who and what the items are about: their clustered SE
must match the naive one. Pairs broken by shuffling the second model's answers across
items: the pairing then carries no shared difficulty, so the paired test cannot outdo the
unpaired one. `control` fires (the unit is confounded) when either half shows its effect
there, by intervals widened to 97.5% for having two chances: a clustered-SE estimator
biased upwards, or a paired SE that shrinks whatever it is given, would do it.

Power: the SE ratio's interval is about +-0.2 (2160 items about 60 people) and the power
gain's about +-0.05 (400 subsets), so a ratio of about 0.3 beyond `ratio_margin` and a gain
of about 0.07 beyond `power_margin` are the smallest detected with 80% power; the paired
test's false-positive rate under the sign-flip null is reported beside them (0.065 to 0.072
on three draws of `s`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from assay.errors import AssayError
from assay.methods.evaluation import correct, mean_se, paired_se
from assay.methods.stats import Estimate, cluster_resamples, from_draws, paired_bootstrap, wilson
from assay.studies._eval_common import mc_tune, person_codes, split_people
from assay.study import (
    Above,
    AllOf,
    AnyOf,
    Context,
    Control,
    Given,
    Needs,
    Result,
    StudyConfig,
    study,
)
from assay.study.figures import errorbars, new_figure, save_figure
from assay.world.evals import multiple_choice

CONTROL_LEVEL = 0.975  # two placebo halves, either can fire: Bonferroni over 2 at 5%


class Config(StudyConfig):
    n_people: int = Field(120, ge=10)      # people asked about (6 facts x 3 wordings each)
    other: str = "tuned"                   # second model: "tuned", a stage suffix or an organism
    tune_people: int = Field(60, ge=1)     # "tuned": other people whose lettered items it learns
    tune_steps: int = Field(40, ge=1)      # "tuned": finetuning steps
    subset_people: int = Field(20, ge=2)   # people per small evaluation in the power test
    n_subsets: int = Field(400, ge=20)     # small evaluations drawn for the power test
    ratio_margin: float = Field(1.25, gt=1)  # clustered / naive SE above this is "material"
    power_margin: float = Field(0.05, gt=0, lt=1)  # paired minus unpaired detection share
    #   above this is "pairing pays"
    n_boot: int = Field(1000, ge=100)      # bootstrap resamples (people; subsets)

    FULL = {"n_people": 200, "n_subsets": 2000, "n_boot": 2000}

    @field_validator("other")
    @classmethod
    def _second_model(cls, other: str) -> str:
        if other == "tuned" or (other.startswith("@") and len(other) > 1):
            return other
        from assay.training.organisms import parse_name

        try:
            parse_name(other)  # an organism name, checked before the run starts
        except AssayError as err:
            raise ValueError(f"{other!r} is neither \"tuned\", a stage such as \"@pretrain\", "
                             f"nor an organism ({err})") from None
        return other


def _parts(cfg: Config) -> tuple[Above, Above]:
    return (Above("se_ratio", bar=cfg.ratio_margin, low=0.0,
                  what="clustered (person) over naive standard error"),
            Above("power_gain", bar=cfg.power_margin, low=-1.0, high=1.0,
                  what="paired minus unpaired detection share"))


def rule(cfg: Config) -> AllOf:
    """Clustering widens the error bars materially, and pairing detects more (where there is
    a difference between the models to detect)."""
    ratio, gain = _parts(cfg)
    differ = Above("separation", bar=0.0, low=-1.0, high=1.0,
                   what="the models' accuracy difference on all items, signed to be positive")
    return AllOf(ratio, Given(differ, gain, why="the two models do not differ detectably, so "
                              "the small evaluations have nothing to find"), says={
        "supported": "independent-item error bars are too narrow and pairing pays",
        "not supported": "one half of the claim fails",
        "inconclusive": "an interval contains its bar, or the models do not differ"})


def control(cfg: Config) -> AnyOf:
    """Either half showing its effect on random clusters or broken pairs confounds the unit."""
    return AnyOf(*_parts(cfg), says={
        "supported": "an effect where there is none: an estimator is biased",
        "not supported": "random clusters do not widen, broken pairs do not pay",
        "inconclusive": "an interval contains its bar"})


def _second(cfg: Config, model) -> list[str]:
    """The organism the second model is, unless it is tuned from the first."""
    if cfg.other == "tuned":
        return []
    return [f"{model.name}{cfg.other}" if cfg.other.startswith("@") else cfg.other]


@study("error-bars", agenda=["3.3"], needs=Needs(organism=True, trainable=True), rule=rule,
       control=control, organisms=_second)
def run(cfg: Config, ctx: Context) -> Result:
    name = ctx.recipe
    world = ctx.world()
    total = len(world.people())
    tune, n = cfg.tune_people, cfg.n_people
    if n + tune > total:  # a small world: at most a third to tune on, the rest to ask
        tune = min(tune, total // 3)
        n = min(n, total - tune)
    people, others = split_people(world, n, ctx.seed, tune)
    fitted = ([f"{name}'s world has {total} people, fewer than the config's {cfg.n_people} "
               f"+ {cfg.tune_people}: {n} evaluated, {tune} tuned on"]
              if (n, tune) != (cfg.n_people, cfg.tune_people) else [])
    if cfg.other == "tuned":
        ctx.report("tuning the second organism", 0.0)
        other = f"{name} + finetune"
        second = mc_tune(ctx.lm(), world, others, cfg.tune_steps, ctx.seed)
    else:
        other, = _second(cfg, ctx.model)
        second = ctx.organism(other)
    models = {name: ctx.lm(), other: second}
    items = multiple_choice(world, people=people, seed=ctx.seed)
    scores = {}
    for j, (label, lm) in enumerate(models.items()):
        ctx.report(f"scoring {label}", 0.4 * j)
        scores[label] = correct(lm, items)
    ctx.report("standard errors and power", 0.8)

    x = scores[name]
    if x.std() == 0:
        raise AssayError(f"{name} answers all {x.size} items {'right' if x[0] else 'wrong'}, so "
                         "there is no standard error to compare: evaluate more people "
                         "(--set n_people=...) or a model that makes some errors")
    by_person = person_codes(items)
    by_template = _codes(np.array([it.template_id for it in items]))
    rng = np.random.default_rng(ctx.seed)
    shuffled = rng.permutation(by_person)  # the same cluster sizes, random membership
    ses = {"naive": mean_se(x), "clustered by person": mean_se(x, by_person),
           "clustered by template": mean_se(x, by_template),
           "random clusters (control)": mean_se(x, shuffled)}
    a, b = scores[name], scores[other]
    broken = b[rng.permutation(b.size)]  # the second model's answers, pairs broken
    hits = _power(a, b, by_person, cfg, np.random.default_rng(ctx.seed))
    placebo = _power(a, broken, by_person, cfg, np.random.default_rng(ctx.seed))
    nulled = _power(a, b, by_person, cfg, np.random.default_rng(ctx.seed + 1), null=True)

    diff = float(a.mean() - b.mean())
    paired, unpaired = paired_se(a, b, by_person)
    metrics: dict[str, Estimate] = {
        "accuracy": Estimate(value=float(x.mean()),
                             ci_low=float(x.mean() - 1.96 * ses["clustered by person"]),
                             ci_high=float(x.mean() + 1.96 * ses["clustered by person"]),
                             n=x.size, method="clustered SE (person)"),
        "se_ratio": _ratio_estimate(x, by_person, cfg, ctx.seed),
        "difference": Estimate(value=diff, ci_low=diff - 1.96 * paired,
                               ci_high=diff + 1.96 * paired, n=x.size,
                               method="paired, clustered SE (person)"),
        **_power_metrics(hits, cfg, ctx.seed),
        **{f"false_positive@{t}": wilson(int(h.sum()), h.size) for t, h in nulled.items()},
    }
    sign = 1.0 if diff >= 0 else -1.0  # a two-sided test: does the interval exclude zero?
    d = metrics["difference"]
    metrics["separation"] = d.model_copy(update={
        "value": abs(diff), "ci_low": min(sign * d.ci_low, sign * d.ci_high),
        "ci_high": max(sign * d.ci_low, sign * d.ci_high)})
    control_metrics = {"se_ratio": _ratio_estimate(x, shuffled, cfg, ctx.seed, CONTROL_LEVEL),
                       **_power_metrics(placebo, cfg, ctx.seed, CONTROL_LEVEL)}
    table = [{"standard error": k, "value": round(v, 5), "ratio to naive": round(v / ses["naive"], 3)}
             for k, v in ses.items()]
    comparison = [{"test": test, "SE of difference (all items)": round(se, 5),
                   "share of subsets finding it": round(metrics[f"power@{test}"].value, 4),
                   "share, pairs broken (control)":
                       round(control_metrics[f"power@{test}"].value, 4)}
                  for test, se in (("paired", paired), ("unpaired", unpaired))]
    return Result(metrics=metrics, tables={"standard_errors": table, "comparison": comparison},
                  control=Control(metrics=control_metrics, condition=(
                      "clusters of the same sizes with random members, and the second model's "
                      "answers shuffled across items so that pairs share nothing")),
                  notes=fitted + [f"{name} minus {other} = {diff:+.4f} on all {x.size} items (SE paired "
                         f"{paired:.4f}, unpaired {unpaired:.4f})",
                         "false positives under the sign-flip null (each person's two models "
                         "swapped at random, so no difference is there to find): paired "
                         f"{metrics['false_positive@paired']}, unpaired "
                         f"{metrics['false_positive@unpaired']}, beside detection shares "
                         f"{metrics['power@paired'].value:.2f} and "
                         f"{metrics['power@unpaired'].value:.2f}; a test at 5% should reject "
                         "about 0.05 of them",
                         f"the {cfg.n_subsets} small evaluations draw {cfg.subset_people} people "
                         f"each from the same {int(by_person.max()) + 1}: they share people, so "
                         "the intervals on detection shares describe the Monte Carlo of subsets, "
                         "not new people"],
                  figures=[_figure(ctx, ses, metrics, name, other, diff)])


def _ratio_estimate(x: np.ndarray, clusters: np.ndarray, cfg: Config, seed: int,
                    level: float = 0.95) -> Estimate:
    """Clustered over naive standard error, its interval from resampling whole clusters (each
    resample recomputes the clustered error with the drawn clusters' own labels)."""
    point = mean_se(x, clusters) / mean_se(x)
    draws = [mean_se(x[idx], keys) / mean_se(x[idx])
             for idx, keys in cluster_resamples(_codes(clusters), cfg.n_boot // 4, seed)
             if x[idx].std() > 0]  # each draw recomputes both errors: a quarter of n_boot
    return from_draws(point, draws, x.size, "bootstrap-clustered", level)


def _codes(clusters: np.ndarray) -> np.ndarray:
    """Integer codes 0..G-1 of any cluster keys."""
    _, codes = np.unique(clusters, return_inverse=True)
    return codes


def _power(a: np.ndarray, b: np.ndarray, people: np.ndarray, cfg: Config,
           rng: np.random.Generator, null: bool = False) -> dict[str, np.ndarray]:
    """Per random subset of people, whether each test rejects 'no difference' (1.0 / 0.0).
    ``null``: the sign-flip null, each person's two models swapped with probability one half,
    which makes the difference zero in expectation and keeps the pairs and the clusters."""
    g = people.max() + 1
    k = min(cfg.subset_people, g)
    hits = {"paired": np.zeros(cfg.n_subsets), "unpaired": np.zeros(cfg.n_subsets)}
    for i in range(cfg.n_subsets):
        chosen = np.isin(people, rng.choice(g, k, replace=False))
        xa, xb, keys = a[chosen], b[chosen], people[chosen]
        if null:
            swap = (rng.random(g) < 0.5)[keys]
            xa, xb = np.where(swap, xb, xa), np.where(swap, xa, xb)
        d = xa.mean() - xb.mean()
        if d == 0:
            continue
        se_p, se_u = paired_se(xa, xb, keys)
        hits["paired"][i] = float(se_p > 0 and abs(d) / se_p > 1.96)
        hits["unpaired"][i] = float(se_u > 0 and abs(d) / se_u > 1.96)
    return hits


def _power_metrics(hits: dict[str, np.ndarray], cfg: Config, seed: int,
                   level: float = 0.95) -> dict[str, Estimate]:
    """Each test's detection share (Wilson) and the paired test's gain over the unpaired
    one on the same subsets (paired bootstrap over subsets)."""
    out = {f"power@{t}": wilson(int(h.sum()), h.size, level) for t, h in hits.items()}
    out["power_gain"] = paired_bootstrap(hits["paired"], hits["unpaired"], n_boot=cfg.n_boot,
                                         level=level, seed=seed)
    return out


def _figure(ctx: Context, ses, metrics, name, other, diff) -> str:
    fig, axes = new_figure(width=5.8, height=4.6, ncols=2)
    labels = list(ses)
    axes[0].bar(range(len(labels)), [ses[k] for k in labels],
                color=["tab:grey", "tab:blue", "tab:purple", "tab:olive"])
    axes[0].set_xticks(range(len(labels)), [k.replace(" (", "\n(") for k in labels], fontsize=7)
    axes[0].set_ylabel("standard error of accuracy")
    axes[0].set_title(f"{name}: one accuracy, four error bars")
    ests = [metrics["power@paired"], metrics["power@unpaired"]]
    y, err = errorbars(ests)
    axes[1].bar([0, 1], y, yerr=err, capsize=3, color=["tab:green", "tab:orange"])
    axes[1].set_xticks([0, 1], ["paired", "unpaired"])
    axes[1].set_ylim(0, 1.02)
    axes[1].set_ylabel("share of small evaluations that detect it")
    axes[1].set_title(f"{name} vs {other}: {diff:+.3f} on all items")
    save_figure(fig, ctx.artifact("error_bars.png"))
    return "error_bars.png"
