"""Test items leaked into training inflate the score, and membership detectors find them (3.3).

Claim (detectors: Shi et al. 2023, arXiv 2310.16789; Zhang et al. 2024, arXiv 2404.02936):
when a benchmark's test items, answers included, are planted in the data a model trains on, its
score on those items rises above what it knows, and membership-inference detectors (Min-K%
Prob; Min-K%++) tell planted items from clean ones.

Setup: the benchmark is multiple choice about people's facts, written as a lettered
test (``Question: ... A. ... Answer: B``), a format the organism was never trained on, so
it scores near chance there. The organism continues pretraining on its own documents with
half of the benchmark's people planted (each planted item ``c`` times in the corpus); every
arm runs the same number of steps, once per training seed (`train_seeds`: the batch order of
the continued pretraining). Each item's change is its accuracy after planting minus after
the same continued pretraining with nothing planted and the same training seed. Inflation is
the planted items' mean change minus the clean items' (a difference in differences, paired
by item within each run: the clean items take out what the arm teaches about the format
itself). Detection is the Min-K% AUROC of planted against clean items, whose people are
disjoint, within each run, averaged over runs. Every interval resamples training runs, then
people within each run. The same detectors then run on real English: an organism trained on
half of Shakespeare's plays, passages of the plays it read against the plays it did not
(reported, not decided on).

Verdict: `rule`: at the arm with the most copies, inflation above ``margin`` and detection
above 0.5, both by their intervals (all parts must hold): supported when both clear their
bars, not supported when either lies below its bar, inconclusive otherwise.

Negative control: the same test on an arm that plants the same items the same number of
times without their answers (question and lettered options only). The model sees the test
but never its key, so the planted items cannot gain over the clean ones; Min-K% still
reads the planted questions, so the detection half may clear its bar there and the control
turns on inflation. A planted text that carries the answer after all, or a score that
rewards having seen the question rather than knowing the answer, fires it. (The old
control read the arm with nothing planted, a model that never saw any item: with a random
split of people it could not fail.)

Power: the quick profile trains two runs per arm (about 3 minutes on 2 cores on s), the full
profile three. On s the quick profile measured an inflation of +0.26 [+0.17, +0.35] (the two
runs' inflations 0.27 and 0.26; one run alone gave +-0.13), so an inflation of about 0.13
beyond `margin` (1.4 half-widths) is the smallest detected with 80% power. The detection
AUROC's interval is +-0.01 or less at 8 copies (0.999 [0.998, 1.000] on s).
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field, field_validator

from assay.methods.evaluation import correct, render
from assay.methods.membership import DETECTORS, membership_scores
from assay.methods.stats import (
    Estimate,
    auroc,
    from_draws,
    seed_cluster_bootstrap,
    seed_cluster_paired,
    seed_cluster_resamples,
)
from assay.studies._eval_common import BENCHMARK, benchmark_text
from assay.study import Above, AllOf, Context, Control, Needs, Result, StudyConfig, TrainSeeds, study
from assay.study.figures import errorbars, new_figure, save_figure
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
    lr: float = Field(1e-3, gt=0)            # learning rate of the continued pretraining
    batch_size: int = Field(16, ge=1)        # sequences per step of the continued pretraining
    k: float = Field(0.2, gt=0, le=1)        # share of tokens Min-K% and Min-K%++ average
    english: str = "shakespeare"             # organism trained on some plays ("" to skip)
    passages: int = Field(200, ge=10)        # Shakespeare passages per side (members, non-members)
    margin: float = Field(0.05, ge=0)        # inflation below this counts as none
    n_boot: int = Field(2000, ge=100)        # bootstrap resamples of training runs, then people
    train_seeds: TrainSeeds = [0, 1]          # continued-pretraining runs per arm (batch orders)

    FULL = {"n_people": 200, "copies": [1, 4, 16], "plant_all": True, "steps": 150,
            "passages": 500, "train_seeds": [0, 1, 2]}


    @field_validator("copies")
    @classmethod
    def _some_copies(cls, copies: list[int]) -> list[int]:
        if not copies or min(copies) < 1:
            raise ValueError("give at least one arm, each with 1 or more copies")
        return copies

    @field_validator("english")
    @classmethod
    def _corpus_organism(cls, name: str) -> str:
        from assay.training.recipes import RECIPES

        corpora = [r.name for r in RECIPES.values() if r.corpus is not None]
        if name and name not in corpora:
            raise ValueError(f"{name!r} is not an organism trained on a text corpus: choose one "
                             f"of {', '.join(corpora)}, or \"\" to skip")
        return name


def rule(cfg: Config) -> AllOf:
    """At the most copies, the leak inflates the score and Min-K% finds the planted items."""
    return AllOf(
        Above("inflation", bar=cfg.margin, low=-1.0, high=1.0,
              what=f"planted minus clean items' accuracy change at {max(cfg.copies)} copies"),
        Above("detection", bar=0.5, low=0.0, high=1.0,
              what=f"Min-K% AUROC of planted against clean items at {max(cfg.copies)} copies"),
        says={"supported": "the leak inflates the score and the detector sees it",
              "not supported": "the leak did not show in the score or in detection",
              "inconclusive": "an interval contains its bar"})


@study("contamination", agenda=["3.3"],
       needs=Needs(organism=True, trainable=True, corpus=True), rule=rule,
       organisms=lambda cfg, model: [cfg.english] if cfg.english else [])
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    people = random.Random(ctx.seed).sample(world.people(), min(cfg.n_people, len(world.people())))
    items = multiple_choice(world, people=people, templates=[0], seed=ctx.seed)
    planted_people = set(people[: len(people) // 2])
    planted = np.array([it.subject in planted_people for it in items])
    texts = [benchmark_text(it) for it in items]
    questions = [render(it, BENCHMARK)[0] for it in items]  # the same, without the answer
    docs = [d.text for d in documents(world)]

    top = max(cfg.copies)
    arms = [("none", 0, planted, texts)] + [(f"half x{c}", c, planted, texts) for c in cfg.copies]
    if cfg.plant_all:
        arms.append((f"all x{top}", top, np.ones(len(items), bool), texts))
    control_arm = f"questions only x{top}"
    arms.append((control_arm, top, planted, questions))
    runs = [(t, arm) for t in cfg.train_seeds for arm in arms]
    n_steps = len(runs) + (1 if cfg.english else 0)
    # scores[label][t]: one arm's readings on one training run (its batch order)
    scores: dict[str, dict[int, dict]] = {label: {} for label, *_ in arms}
    for j, (t, (label, c, mask, planting)) in enumerate(runs):
        ctx.report(f"training seed {t}: continued pretraining: {label}", j / n_steps)
        leaked = [x for x, m in zip(planting, mask) if m] * c
        lm, _ = finetune(base, docs + leaked, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=5),
                         batch_size=cfg.batch_size, seed=1000 * ctx.seed + t)
        ctx.add_flops(6 * lm.n_params * cfg.steps * cfg.batch_size * 128)
        scores[label][t] = {"correct": correct(lm, items, BENCHMARK),
                            "native": correct(lm, items),
                            "membership": membership_scores(lm, texts, k=cfg.k)}
    english = None
    if cfg.english:
        ctx.report(f"membership on real English: organism {cfg.english}", len(runs) / n_steps)
        english = _shakespeare(ctx, cfg)
    ctx.report("intervals and figures", 1.0)

    subjects = [it.subject for it in items]
    found = {label: _arm(scores[label], scores["none"], mask, subjects, cfg, ctx.seed)
             for label, _, mask, _ in arms if label != "none"}
    metrics: dict[str, Estimate] = {_at(name, label): e for label, arm in found.items()
                                    if label != control_arm for name, e in arm.items()}
    metrics["inflation"] = found[f"half x{top}"]["inflation"]
    metrics["detection"] = found[f"half x{top}"]["auroc/min_k"]
    control = dict(found[control_arm])
    control["detection"] = control["auroc/min_k"]
    rows, per_run = [], []
    for label, c, mask, planting in arms:
        s = scores[label]
        correct_ = np.stack([s[t]["correct"] for t in cfg.train_seeds])  # (S, N)
        row = {"arm": label, "copies": c, "planted items": int(mask.sum()),
               "answers planted": planting is texts and c > 0}
        for part, sel in (("planted", planted), ("clean", ~planted)):
            row[f"accuracy ({part})"] = round(float(correct_[:, sel].mean()), 4)
        native = np.stack([s[t]["native"] for t in cfg.train_seeds])
        row["native-format accuracy (planted)"] = round(float(native[:, planted].mean()), 4)
        for d in DETECTORS:
            if f"auroc/{d}" in found.get(label, {}):
                row[f"AUROC {LABELS[d]}"] = round(found[label][f"auroc/{d}"].value, 4)
        rows.append(row)
        for t in cfg.train_seeds:
            change = s[t]["correct"] - scores["none"][t]["correct"]
            run_row = {"train_seed": t, "arm": label,
                       "accuracy (planted)": round(float(s[t]["correct"][planted].mean()), 4),
                       "accuracy (clean)": round(float(s[t]["correct"][~planted].mean()), 4)}
            if not mask.all():  # an arm that left some items clean
                run_row["inflation"] = round(_gap(change, mask), 4)
                run_row["AUROC Min-K%"] = round(_auc(s[t]["membership"]["min_k"], mask), 4)
            per_run.append(run_row)
    tables = {"arms": rows, "runs": per_run}
    n_runs = len(cfg.train_seeds)
    notes = [f"every arm trained {n_runs} time(s), training seeds "
             f"{', '.join(map(str, cfg.train_seeds))} (the batch order of the continued "
             "pretraining); accuracies are pooled over those runs and every interval resamples "
             "training runs, then people (the runs table gives each run)"]
    if n_runs == 1:
        notes.append("this verdict rests on one training run per arm, so its intervals hold no "
                     "training-run variance; the full profile trains three")
    if english is not None:
        notes.append("on Shakespeare (read against unread plays): " + ", ".join(
            f"{LABELS[d]} AUROC {e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"
            for d, e in english["auroc"].items()))
        metrics.update({f"shakespeare_auroc/{d}": e for d, e in english["auroc"].items()})
        tables["shakespeare"] = [{"detector": LABELS[d], "AUROC": round(e.value, 4),
                                  "ci_low": round(e.ci_low, 4), "ci_high": round(e.ci_high, 4)}
                                 for d, e in english["auroc"].items()]
    figures = [_figure(ctx, scores, arms, planted, subjects, cfg.train_seeds, english)]
    return Result(metrics=metrics, tables=tables, figures=figures, notes=notes,
                  control=Control(metrics=control, condition=(
                      f"the items of the planted people planted {top} times without their "
                      "answers: the score cannot gain from a key it never saw")))


SEEDS_THEN_PEOPLE = "bootstrap over training seeds, then people"


def _arm(arm: dict[int, dict], none: dict[int, dict], mask: np.ndarray, subjects: list[str],
         cfg: Config, seed: int) -> dict[str, Estimate]:
    """One arm against the arm with nothing planted, run by run (each training seed's arm
    against that seed's unplanted arm, item by item): each side's accuracy change, inflation
    (planted minus clean change) and the detectors' within-run AUROCs, where the arm left some
    items clean. Every interval resamples training runs, then people within each run."""
    runs = sorted(arm)
    after = np.concatenate([arm[t]["correct"] for t in runs])  # (S*N,)
    before = np.concatenate([none[t]["correct"] for t in runs])
    change = after - before
    seeds = np.repeat(runs, len(subjects))
    people = np.tile(subjects, len(runs))
    hit = np.tile(mask, len(runs))  # planted rows
    out = {}
    for part, sel in (("planted", hit), ("clean", ~hit)):
        if sel.any():
            out[f"inflation/{part}"] = seed_cluster_paired(
                after[sel], before[sel], seeds[sel], people[sel], n_boot=cfg.n_boot, seed=seed)
    if mask.all():
        return out
    draws = seed_cluster_resamples(seeds, people, cfg.n_boot, seed)
    point = change[hit].mean() - change[~hit].mean()
    out["inflation"] = from_draws(point, [_gap(change[i], hit[i]) for i in draws], len(change),
                                  SEEDS_THEN_PEOPLE)
    for d in DETECTORS:  # planted against clean people, within each run, averaged over runs
        score = np.concatenate([arm[t]["membership"][d] for t in runs])
        point = float(np.mean([_auc(arm[t]["membership"][d], mask) for t in runs]))
        out[f"auroc/{d}"] = from_draws(point, [_within_runs(score[i], hit[i], seeds[i])
                                               for i in draws], len(score), SEEDS_THEN_PEOPLE)
    return out


def _gap(change: np.ndarray, planted: np.ndarray) -> float:
    """Planted minus clean mean change (NaN when a resample lost one side)."""
    if planted.all() or not planted.any():
        return float("nan")
    return float(change[planted].mean() - change[~planted].mean())


def _auc(scores: np.ndarray, planted: np.ndarray) -> float:
    """AUROC of planted over clean items (ties count one half); NaN without both."""
    pos, neg = scores[planted], np.sort(scores[~planted])
    if not pos.size or not neg.size:
        return float("nan")
    below = np.searchsorted(neg, pos, "left")
    ties = np.searchsorted(neg, pos, "right") - below
    return float((below + ties / 2).mean() / neg.size)


def _within_runs(scores: np.ndarray, planted: np.ndarray, seeds: np.ndarray) -> float:
    """The AUROC within each training run of a resample, averaged with weights by its rows
    (a run drawn twice counts twice): scores of different models are never ranked together."""
    runs, sizes = np.unique(seeds, return_counts=True)
    aucs = np.array([_auc(scores[seeds == r], planted[seeds == r]) for r in runs])
    ok = np.isfinite(aucs)
    return float(np.average(aucs[ok], weights=sizes[ok])) if ok.any() else float("nan")


def _at(name: str, arm: str) -> str:
    """An arm's metric name in the result: "inflation/planted" of arm "half x8" is
    "inflation@half x8/planted"."""
    base, _, part = name.partition("/")
    return f"{base}@{arm}" + (f"/{part}" if part else "")


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


def _figure(ctx: Context, scores, arms, planted, subjects, train_seeds, english) -> str:
    panels = 3 if english is not None else 2
    fig, axes = new_figure(width=4.6, height=4.0, ncols=panels)
    ax = axes[0]
    labels = [a[0] for a in arms]
    for k, (part, sel) in enumerate((("planted", planted), ("clean", ~planted))):
        keys = [s for s, m in zip(subjects, sel) if m] * len(train_seeds)
        runs = np.repeat(train_seeds, int(sel.sum()))
        est = [seed_cluster_bootstrap(np.concatenate([scores[a][t]["correct"][sel]
                                                      for t in train_seeds]), runs, keys,
                                      n_boot=1000) for a in labels]
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
        vals = [np.mean([_auc(scores[a][t]["membership"][d], planted) for t in train_seeds])
                for a in labels]
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
