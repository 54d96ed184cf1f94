"""Test items leaked into training inflate the score, and membership detectors find them (3.3).

Claim: when a benchmark's test items, answers included, are planted in the data a model
trains on, its score on those items rises above what it knows, and membership-inference
detectors (Min-K% Prob, Shi et al. 2023, arXiv 2310.16789; Min-K%++, Zhang et al. 2024,
arXiv 2404.02936) tell planted items from clean ones.

Setup: the benchmark is multiple choice about people's facts, written as a lettered
test (``Question: ... A. ... Answer: B``), a format the organism was never trained on, so
it scores near chance there. The organism continues pretraining on its own documents with
half of the benchmark's people planted (each planted item ``c`` times in the corpus),
and every arm runs the same number of steps. Inflation is each item's accuracy after
planting minus after the same continued pretraining with nothing planted, resampling
whole people. Detection is the AUROC of planted against clean items, whose people are
disjoint. The same detectors then run on real English: an organism trained on half of
Shakespeare's plays, passages of the plays it read against the plays it did not.

Negative control: the arm with nothing planted, read with the same split of items, must
show neither inflation nor detection (AUROC near 0.5).
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field, field_validator

from assay.methods.evaluation import correct
from assay.methods.membership import DETECTORS, membership_scores
from assay.methods.stats import Estimate, auroc, clustered_bootstrap
from assay.report.figures import errorbars, new_figure, save_figure
from assay.studies import Context, Control, Needs, Result, StudyConfig, Verdict, study
from assay.studies._eval_common import BENCHMARK, benchmark_text
from assay.training.finetune import finetune
from assay.training.trainer import TrainConfig
from assay.world import documents
from assay.world.evals import multiple_choice

LABELS = {"loss": "loss", "min_k": "Min-K%", "min_k_plus_plus": "Min-K%++", "zlib": "zlib"}


class Config(StudyConfig):
    n_people: int = Field(60, ge=4)          # people whose six facts form the benchmark
    copies: list[int] = [1, 8]               # copies of each planted item in the corpus, per arm
    plant_all: bool = False                  # one more arm with every item planted (largest copies)
    steps: int = Field(60, ge=1)             # continued-pretraining steps, the same for every arm
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    k: float = Field(0.2, gt=0, le=1)        # share of tokens Min-K% and Min-K%++ average
    english: str = "shakespeare"             # organism trained on some plays ("" to skip)
    passages: int = Field(200, ge=10)        # Shakespeare passages per side (members, non-members)
    margin: float = Field(0.05, ge=0)        # inflation below this counts as none

    FULL = {"n_people": 200, "copies": [1, 4, 16], "plant_all": True, "steps": 150,
            "passages": 500}

    @field_validator("english")
    @classmethod
    def _corpus_organism(cls, name: str) -> str:
        from assay.training.recipes import RECIPES

        corpora = [r.name for r in RECIPES.values() if r.corpus is not None]
        if name and name not in corpora:
            raise ValueError(f"{name!r} is not an organism trained on a text corpus: choose one "
                             f"of {', '.join(corpora)}, or \"\" to skip")
        return name


@study("contamination", agenda=["3.3"], needs=Needs(trainable=True))
def run(cfg: Config, ctx: Context) -> Result:
    name = ctx.organism_recipe("contamination", "it plants benchmark items in the organism's "
                               "own training documents")
    world, base = ctx.world(name), ctx.lm()
    people = random.Random(ctx.seed).sample(world.people(), min(cfg.n_people, len(world.people())))
    items = multiple_choice(world, people=people, templates=[0], seed=ctx.seed)
    planted_people = set(people[: len(people) // 2])
    planted = np.array([it.subject in planted_people for it in items])
    texts = [benchmark_text(it) for it in items]
    subjects = [it.subject for it in items]
    docs = [d.text for d in documents(world)]

    arms = [("none", 0, planted)] + [(f"half x{c}", c, planted) for c in cfg.copies]
    if cfg.plant_all:
        arms.append((f"all x{max(cfg.copies)}", max(cfg.copies), np.ones(len(items), bool)))
    n_steps = len(arms) + (1 if cfg.english else 0)
    scores: dict[str, dict] = {}
    for j, (label, c, mask) in enumerate(arms):
        ctx.report(f"continued pretraining: {label}", j / n_steps)
        leaked = [t for t, m in zip(texts, mask) if m] * c
        lm, _ = finetune(base, docs + leaked, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=5),
                         batch_size=cfg.batch_size, seed=ctx.seed)
        ctx.add_flops(6 * lm.n_params * cfg.steps * cfg.batch_size * 128)
        scores[label] = {"correct": correct(lm, items, BENCHMARK),
                         "native": correct(lm, items),
                         "membership": membership_scores(lm, texts, k=cfg.k)}
    english = None
    if cfg.english:
        ctx.report(f"membership on real English: organism {cfg.english}", len(arms) / n_steps)
        english = _shakespeare(ctx, cfg)
    ctx.report("verdict and figures", 1.0)

    none = scores["none"]
    metrics: dict[str, Estimate] = {}
    rows = []
    for label, c, mask in arms:
        s = scores[label]
        row = {"arm": label, "copies": c, "planted items": int(mask.sum())}
        for part, sel in (("planted", planted), ("clean", ~planted)):
            row[f"accuracy ({part})"] = round(float(s["correct"][sel].mean()), 4)
            if label != "none":
                metrics[f"inflation@{label}/{part}"] = _paired(s["correct"], none["correct"],
                                                               sel, subjects)
        row["native-format accuracy (planted)"] = round(float(s["native"][planted].mean()), 4)
        if label != "none" and mask.sum() < len(items):
            for d in DETECTORS:
                est = auroc(s["membership"][d], list(planted), seed=ctx.seed)
                metrics[f"auroc@{label}/{d}"] = est
                row[f"AUROC {LABELS[d]}"] = round(est.value, 4)
        rows.append(row)
    control_metrics = {f"auroc@none/{d}": auroc(none["membership"][d], list(planted), seed=ctx.seed)
                       for d in DETECTORS}
    control_metrics["accuracy@none/planted-clean"] = _difference(none["correct"], planted, subjects)
    tables = {"arms": rows}
    if english is not None:
        metrics.update({f"shakespeare_auroc/{d}": e for d, e in english["auroc"].items()})
        tables["shakespeare"] = [{"detector": LABELS[d], "AUROC": round(e.value, 4),
                                  "ci_low": round(e.ci_low, 4), "ci_high": round(e.ci_high, 4)}
                                 for d, e in english["auroc"].items()]
    top = f"half x{max(cfg.copies)}"
    figures = [_figure(ctx, scores, arms, planted, subjects, english)]
    return Result(metrics=metrics, tables=tables, figures=figures,
                  verdict=_verdict(metrics, top, cfg, english),
                  control=_control(control_metrics, cfg))


def _paired(after: np.ndarray, before: np.ndarray, sel: np.ndarray, subjects) -> Estimate:
    """Mean per-item change over the selected items, resampling whole people."""
    keys = [s for s, m in zip(subjects, sel) if m]
    return clustered_bootstrap((after - before)[sel], keys)


def _difference(values: np.ndarray, planted: np.ndarray, subjects) -> Estimate:
    """Planted minus clean mean, each side resampling its own people."""
    keys = np.array(subjects)
    a = clustered_bootstrap(values[planted], keys[planted], n_boot=2000, seed=1)
    b = clustered_bootstrap(values[~planted], keys[~planted], n_boot=2000, seed=2)
    half = float(np.hypot(a.ci_high - a.ci_low, b.ci_high - b.ci_low) / 2)
    diff = a.value - b.value
    return Estimate(value=diff, ci_low=diff - half, ci_high=diff + half, n=len(values),
                    method="difference of clustered bootstraps")


def _shakespeare(ctx: Context, cfg: Config) -> dict:
    from assay.training.organisms import organism_corpus

    corpus = organism_corpus(cfg.english)
    lm = ctx.organism(cfg.english)
    members = [p.text for p in corpus.passages(True, cfg.passages, seed=ctx.seed)]
    others = [p.text for p in corpus.passages(False, cfg.passages, seed=ctx.seed)]
    scores = membership_scores(lm, members + others, k=cfg.k, max_tokens=128)
    labels = [True] * len(members) + [False] * len(others)
    return {"auroc": {d: auroc(scores[d], labels, seed=ctx.seed) for d in DETECTORS},
            "scores": scores, "labels": labels}


def _verdict(metrics: dict[str, Estimate], top: str, cfg: Config, english) -> Verdict:
    infl = metrics[f"inflation@{top}/planted"]
    clean = metrics[f"inflation@{top}/clean"]
    mink = metrics[f"auroc@{top}/min_k"]
    test = (f"at {top}: accuracy change on planted items (clustered by person) above "
            f"{cfg.margin:g} and Min-K% AUROC above 0.5, both by their 95% intervals")
    head = (f"planting {top.split('x')[1]} copies raised accuracy on planted items by "
            f"{infl.value:+.3f} [{infl.ci_low:+.3f}, {infl.ci_high:+.3f}] (clean items "
            f"{clean.value:+.3f}); Min-K% AUROC {mink.value:.3f} [{mink.ci_low:.3f}, "
            f"{mink.ci_high:.3f}], Min-K%++ {metrics[f'auroc@{top}/min_k_plus_plus'].value:.3f}")
    if english is not None:
        e = english["auroc"]
        head += (f"; on Shakespeare, Min-K% {e['min_k'].value:.3f}, Min-K%++ "
                 f"{e['min_k_plus_plus'].value:.3f}, loss {e['loss'].value:.3f}")
    if infl.ci_low > cfg.margin and mink.ci_low > 0.5:
        status, tail = "supported", "the leak inflates the score and the detectors see it"
    elif infl.ci_high < cfg.margin or mink.ci_high < 0.5:
        status, tail = "not supported", "the leak did not show in score or detection"
    else:
        status, tail = "inconclusive", "an interval straddles its threshold"
    return Verdict(status=status, test=test, statement=f"{head}: {tail}.")


def _control(metrics: dict[str, Estimate], cfg: Config) -> Control:
    mink = metrics["auroc@none/min_k"]
    diff = metrics["accuracy@none/planted-clean"]
    test = ("nothing planted, same split: the claim's test (planted-minus-clean accuracy above "
            f"{cfg.margin:g} and Min-K% AUROC above 0.5) must fail")
    head = (f"with nothing planted, planted-minus-clean accuracy {diff.value:+.3f} "
            f"[{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], Min-K% AUROC {mink.value:.3f} "
            f"[{mink.ci_low:.3f}, {mink.ci_high:.3f}]")
    if diff.ci_low > cfg.margin and mink.ci_low > 0.5:
        status, tail = "supported", "an effect without a leak: the split is confounded"
    elif diff.ci_high < cfg.margin or mink.ci_high < 0.5 or mink.ci_low < 0.5:
        status, tail = "not supported", "no leak, no effect"
    else:
        status, tail = "inconclusive", "an interval straddles its threshold"
    return Control(verdict=Verdict(status=status, test=test, statement=f"{head}: {tail}."),
                   metrics=metrics)


def _figure(ctx: Context, scores, arms, planted, subjects, english) -> str:
    panels = 3 if english is not None else 2
    fig, axes = new_figure(width=4.6, height=4.0, ncols=panels)
    ax = axes[0]
    labels = [a[0] for a in arms]
    for k, (part, sel) in enumerate((("planted", planted), ("clean", ~planted))):
        keys = [s for s, m in zip(subjects, sel) if m]
        est = [clustered_bootstrap(scores[a]["correct"][sel], keys) for a in labels]
        y, err = errorbars(est)
        ax.bar(np.arange(len(labels)) + (k - 0.5) * 0.38, y, width=0.38, yerr=err, capsize=2,
               label=f"{part} items")
    ax.axhline(0.25, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("benchmark accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("Score inflation by leaked copies")
    ax.legend(fontsize=7)
    ax = axes[1]
    for d in ("loss", "min_k", "min_k_plus_plus"):
        vals = [auroc(scores[a]["membership"][d], list(planted), n_boot=200).value for a in labels]
        ax.plot(range(len(labels)), vals, marker="o", label=LABELS[d])
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("AUROC, planted vs clean")
    ax.set_title("Membership detection")
    ax.legend(fontsize=7)
    if english is not None:
        ax = axes[2]
        est = [english["auroc"][d] for d in DETECTORS]
        y, err = errorbars(est)
        ax.bar(range(len(DETECTORS)), y, yerr=err, capsize=3, color="tab:green")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(DETECTORS)), [LABELS[d] for d in DETECTORS], fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("AUROC, read vs unread plays")
        ax.set_title("Shakespeare organism")
    save_figure(fig, ctx.artifact("contamination.png"))
    return "contamination.png"
