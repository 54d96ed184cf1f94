"""Emergence can be an artefact of the metric (2.3).

Claim (Schaeffer et al. 2023, arXiv 2304.15004): scored by exact match, multi-digit
addition seems to appear suddenly with scale; scored by a continuous metric of the same
outputs (per-token log-likelihood of the right answer, or edit distance), ability grows
smoothly.

Setup: the ladder's sizes at its largest budget (`_ladder`) answer the world's held-out
two-digit sums, whose reference reply works the sum digit by digit ("4+9=13, 6+5+1=12, so
123"). Per size: exact match (the reply's final number is the sum), the reference reply's
mean per-token probability, and one minus the normalised edit distance between the greedy
reply and the reference. Sharpness of a curve over sizes: its largest step between
neighbouring sizes as a share of its whole rise (1: all in one step; 1/(sizes-1): even).
With several ``train_seeds`` (whole ladders trained from other seeds, `ladder-<d>-<steps>~k`)
each curve is the mean over the ladders, and intervals resample ladders and sums together
(a crossed bootstrap: every ladder answers the same sums). The quick profile reads one
ladder (a second would double its 20 minutes of training on 2 cores); the full profile
reads three, so its verdict carries the variance between training runs.

Verdict: `rule`: the sharpness of exact match minus that of the per-token probability
(resampling sums) against zero: supported above it, not supported below it, inconclusive
when the interval contains it.

Negative control: the same test on the two continuous metrics (edit distance against the
per-token probability): neither is a threshold, so neither may look sharper than the other;
a broken sharpness measure (or a metric that thresholds after all) would fire here.

Power: the sharpness gap's interval is about +-0.1 over 100 resampled items on one ladder, so
a gap of about 0.15 between the two metrics' sharpness is the smallest the quick profile
detects with 80% power; the full profile's three ladders widen the interval by whatever the
training runs disagree.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.stats import Estimate, crossed_resamples, from_draws
from assay.studies._ladder import ladder_organisms, load_runs, smooth_share
from assay.study import Above, Context, Control, Needs, Result, StudyConfig, TrainSeeds, study
from assay.study.figures import new_figure, save_figure
from assay.training.recipes import LADDER_SIZES, LADDER_STEPS
from assay.world import dialogues
from assay.world.checks import final_number

METRICS = ("exact match", "per-token probability", "1 - edit distance")


class Config(StudyConfig):
    sizes: list[int] = list(LADDER_SIZES)  # ladder rungs (d_model), smallest first
    steps: int = max(LADDER_STEPS)         # the budget every size is read at
    n_sums: int = Field(100, ge=10)        # held-out sums asked
    n_boot: int = Field(1000, ge=100)      # bootstrap resamples of the sums
    train_seeds: TrainSeeds = [0]           # whole ladders, each trained from its own seed

    FULL = {"n_boot": 2000, "train_seeds": [0, 1, 2]}



def rule(cfg: Config) -> Above:
    """Exact match is sharper than the per-token probability of the same replies."""
    return Above("sharpness_gap", bar=0.0, low=-1.0, high=1.0,
                 what="sharpness(thresholded metric) - sharpness(per-token probability)",
                 says={"supported": "the thresholded metric jumps where the continuous one grows",
                       "not supported": "the continuous metric is the sharper one",
                       "inconclusive": "the interval contains zero: no difference shown"})


@study("emergence-metric", agenda=["2.3"], needs=Needs(white_box=False, chat=False, model=False), rule=rule,
       organisms=lambda cfg, model: ladder_organisms(cfg.sizes, [cfg.steps], cfg.train_seeds))
def run(cfg: Config, ctx: Context) -> Result:
    sums = dialogues(ctx.world("s"), "add", "test")[: cfg.n_sums]
    sizes = sorted(cfg.sizes)
    scores = {m: [] for m in METRICS}  # metric -> per size, (n_sums,) per-item scores
    runs = load_runs(ctx, sizes, [cfg.steps], 0.0, 0.5, cfg.train_seeds)
    for j, (run_, lm) in enumerate(runs):
        ctx.report(f"scoring {run_.name}", 0.5 + 0.45 * j / len(runs))
        replies = lm.generate([d.prompt for d in sums], max_new_tokens=32, batch_size=100)
        scores["exact match"].append(np.array(
            [final_number(r) == final_number(d.assistant) for r, d in zip(replies, sums)], float))
        scored = lm.score([d.prompt for d in sums], [d.assistant for d in sums])
        scores["per-token probability"].append(np.exp([s.logprob / s.n_tokens for s in scored]))
        scores["1 - edit distance"].append(np.array(
            [1 - _edit(r.strip(), d.assistant) for r, d in zip(replies, sums)]))
    k = len(cfg.train_seeds)
    curves = {m: np.stack(v).reshape(k, len(sizes), -1) for m, v in scores.items()}  # (K, S, n)
    draws = crossed_resamples(k, len(sums), cfg.n_boot, ctx.seed)
    method = "bootstrap (sums)" if k == 1 else "bootstrap (training seeds x sums)"

    def share(metric: str, idx) -> float:
        seeds, items = idx
        return smooth_share(curves[metric][seeds][:, :, items].mean(axis=(0, 2)))

    def diff(a: str, b: str) -> Estimate:
        every = (slice(None), slice(None))
        return from_draws(share(a, every) - share(b, every),
                        np.array([share(a, d) - share(b, d) for d in draws]), len(sums), method)

    claim = diff("exact match", "per-token probability")
    control = diff("1 - edit distance", "per-token probability")
    metrics: dict[str, Estimate] = {"sharpness_gap": claim}
    for m in METRICS:
        metrics[f"sharpness@{m}"] = from_draws(share(m, (slice(None), slice(None))),
                                             np.array([share(m, d) for d in draws]), len(sums),
                                             method)
    table = [{"run": r.name, "training seed": r.seed, "N (non-embedding)": r.n_params,
              **{m: round(float(curves[m][j // len(sizes), j % len(sizes)].mean()), 4)
                 for m in METRICS}}
             for j, (r, _) in enumerate(runs)]
    return Result(
        metrics=metrics, tables={"sizes": table},
        control=Control(metrics={"sharpness_gap": control},
                        condition="1 - edit distance in place of exact match"),
        figures=[_figure(ctx, runs[:len(sizes)], curves)])



def _edit(a: str, b: str) -> float:
    """Levenshtein distance between two strings over the longer one's length."""
    if not a and not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(len(a), len(b))


def _figure(ctx: Context, runs, curves) -> str:
    fig, ax = new_figure(5.0, 3.6)
    N = [r.n_params for r, _ in runs]
    for m, style in zip(METRICS, ("o-", "s--", "^:")):
        ax.plot(N, curves[m].mean(axis=(0, 2)), style, label=m)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("score on held-out two-digit sums")
    ax.set_title("one ability, three metrics")
    ax.legend(fontsize=8)
    save_figure(fig, ctx.artifact("emergence.png"))
    return "emergence.png"
