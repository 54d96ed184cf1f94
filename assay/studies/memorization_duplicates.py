"""Memorisation grows with duplicates and model size, and deduplication removes most of it (3.1, 4.3).

Claim (Carlini et al. 2023, arXiv 2202.07646; Kandpal, Wallace and Raffel 2022, arXiv
2202.06539; exposure: Carlini et al. 2019, arXiv 1802.08232): how much of a training sequence
a language model can be made to emit grows with how often the sequence is repeated in the
training data and with the model's size, and deduplicating the data removes most of it.

Setup: canaries are sentences "The access code of NAME is d d d d d d." with an invented name
(sharing no word with any name in the world) and six random digits. Groups of ``per_group``
canaries are planted ``copies`` times each in the unit's world documents; ``unplanted`` more
are never planted. Models of the ladder's widths (``sizes``) are trained from scratch on that
corpus with the recipe's trainer (the same steps and batch for every size), and the largest
once more on the deduplicated corpus (each canary once); each model once per training seed
(``train_seeds``: initialisation and batch order). Per canary: exact extraction (greedy
decoding from "The access code of NAME is" gives the six digits) and exposure in bits, -log2
of the share of all digit strings the model ranks above the true one. A rank among R sampled
alternatives caps exposure at log2(R + 1) (8.97 bits for 499), which a small model reaches
after a few copies; so, as Carlini et al. (2019) do, the share is extrapolated from a normal
fit to the alternatives' log-likelihoods, and capped at the space's log2(10^6) = 19.9 bits. A
model that knows nothing of a canary has exposure 1/ln 2 = 1.44 bits on average.

Verdict: `rule`, three parts that must all hold: at the largest size, the exposure of the
canaries planted most often minus of those planted once above ``margin`` bits; the exposure of
every planted canary on the largest model minus on the smallest above 0 (all copy counts);
and deduplication removing at least half of
the gain from copies (the most-copied canaries' exposure before minus after deduplication,
over the first part's gain). Supported when all three clear their bars, not supported when
any lies below, inconclusive otherwise. Intervals resample training runs, then canaries.

Negative control: canaries of the same format never planted, read on the largest model: no
training text holds their digits, so their exposure must sit at chance; the control
(`control_rule`) fires when it exceeds chance by ``margin`` bits. Alternatives drawn from a
different distribution than the true digits, or a scoring that favours the first
candidate, would fire it.

Power: measured on s (quick, seed 0, 144 s on 2 cores): the exposure gain from 1 to 64 copies
on d96 was 7.2 [4.5, 9.8] bits (64 copies reach the 19.9-bit cap, one copy 12.7), so with 8
canaries a group a gain of about 2 bits beyond ``margin`` is the smallest detected with 80%
power; d96 over d32 +10.5 [9.1, 11.9] bits; deduplication took the 64-copy canaries to 4.4
bits, 2.2 [1.6, 3.5] times the gain (the deduplicated corpus no longer teaches the canaries'
format 680 times, so even single canaries sit lower); never-planted canaries -0.19 [-0.56,
+0.25] bits from chance. The quick profile trains each model once, so its intervals hold no
training-run variance; the full profile trains three runs of three sizes at eight copy counts.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field, field_validator
from scipy.stats import norm

from assay.methods.stats import Estimate, bootstrap, from_draws, seed_cluster_resamples
from assay.models import LM
from assay.studies._scratch import train_from_scratch, training_flops
from assay.study import (
    Above,
    AllOf,
    Context,
    Control,
    Needs,
    Result,
    StudyConfig,
    TrainSeeds,
    study,
)
from assay.study.figures import errorbars, new_figure, save_figure
from assay.training.recipes import LADDER_SIZES
from assay.world import documents
from assay.world.names import NameMaker

DIGITS = 6
SEEDS_THEN_CANARIES = "bootstrap over training seeds, then canaries"
CHANCE = 1 / np.log(2)  # mean exposure of a canary the model knows nothing of: E[-log2 U]
MOST = DIGITS * np.log2(10)  # exposure of a canary ranked first among all 10^6 digit strings


class Config(StudyConfig):
    sizes: list[int] = [32, 96]              # ladder widths (d_model) trained, smallest first
    copies: list[int] = [1, 4, 16, 64]       # copies of each planted canary, one group per count
    per_group: int = Field(8, ge=2)          # canaries per copy count
    unplanted: int = Field(24, ge=2)         # canaries of the same format never planted (control)
    steps: int = Field(300, ge=10)           # training steps of every model (batches of 16 x 128)
    lr: float = Field(3e-3, gt=0)            # peak learning rate
    alternatives: int = Field(499, ge=9)     # random digit strings the exposure is fitted to
    margin: float = Field(1.0, gt=0)         # bits of exposure that count as an effect
    n_boot: int = Field(4000, ge=100)        # bootstrap resamples of training runs, then canaries
    train_seeds: TrainSeeds = [0]             # training runs of every model (init and batch order)

    FULL = {"sizes": [32, 64, 128], "copies": [1, 2, 4, 8, 16, 32, 64, 100], "per_group": 16,
            "unplanted": 48, "alternatives": 999, "train_seeds": [0, 1, 2]}

    @field_validator("sizes")
    @classmethod
    def _ladder_sizes(cls, sizes: list[int]) -> list[int]:
        bad = [s for s in sizes if s not in LADDER_SIZES]
        if bad or len(sizes) < 2:
            raise ValueError(f"give two or more of the ladder's widths {list(LADDER_SIZES)}")
        return sorted(sizes)

    @field_validator("copies")
    @classmethod
    def _copies(cls, copies: list[int]) -> list[int]:
        if len(copies) < 2 or min(copies) < 1 or len(set(copies)) != len(copies):
            raise ValueError("give two or more distinct copy counts, each 1 or more")
        return sorted(copies)


def rule(cfg: Config) -> AllOf:
    """More copies, a larger model: more exposure; deduplication takes most of it away."""
    top, once = max(cfg.copies), min(cfg.copies)
    return AllOf(
        Above("exposure_gain", bar=cfg.margin, low=-40.0, high=40.0,
              what=f"exposure at {top} copies minus at {once}, largest model (bits)"),
        Above("size_gain", bar=0.0, low=-40.0, high=40.0,
              what="exposure of every planted canary, largest minus smallest model (bits)"),
        Above("dedup_share", bar=0.5, low=-5.0, high=5.0,
              what=f"share of the {top}-copy gain over {once} copy that deduplication removes"),
        says={"supported": "memorisation grows with copies and size, and deduplication "
                           "removes most of it",
              "not supported": "a part of the claim is contradicted",
              "inconclusive": "an interval contains its bar"})


def control_rule(cfg: Config) -> Above:
    """Canaries never planted are exposed beyond chance."""
    return Above("exposure_lift", bar=cfg.margin, low=-40.0, high=40.0,
                 what="exposure of never-planted canaries minus chance, largest model (bits)",
                 says={"supported": "unplanted canaries look memorised: the measure is broken",
                       "not supported": "unplanted canaries sit at chance",
                       "inconclusive": "the interval contains its bar"})


@study("memorization-duplicates", agenda=["3.1", "4.3"], needs=Needs(organism=True), rule=rule,
       control=control_rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    rng = random.Random(ctx.seed)
    canaries = _canaries(world, len(cfg.copies) * cfg.per_group + cfg.unplanted, rng)
    group = np.concatenate([np.repeat(np.arange(len(cfg.copies)), cfg.per_group),
                            np.full(cfg.unplanted, len(cfg.copies))])  # last: never planted
    copies = np.array(list(cfg.copies) + [0])[group]
    docs = [d.text for d in documents(world)]
    planted = [text for (prefix, secret), c in zip(canaries, copies)
               for text in [f"{prefix} {secret}."] * int(c)]
    alternatives = [[_digits(rng) for _ in range(cfg.alternatives)] for _ in canaries]

    arms = [(f"d{d}", d, docs + planted) for d in cfg.sizes]
    arms.append((f"d{max(cfg.sizes)} deduplicated", max(cfg.sizes),
                 docs + list(dict.fromkeys(planted))))
    runs = [(t, arm) for t in cfg.train_seeds for arm in arms]
    found: dict[str, dict[int, dict]] = {label: {} for label, *_ in arms}
    for j, (t, (label, d, corpus)) in enumerate(runs):
        ctx.report(f"training seed {t}: {label} on {len(corpus)} texts "
                   f"({len(corpus) - len(docs)} canary copies)", j / len(runs))
        lm = train_from_scratch(base, d, corpus, steps=cfg.steps, lr=cfg.lr,
                                seed=1000 * ctx.seed + t, name="canaries")
        ctx.add_flops(training_flops(lm, cfg.steps))
        ctx.report(f"training seed {t}: reading the canaries from {label}", (j + 0.8) / len(runs))
        found[label][t] = {"exposure": _exposure(lm, canaries, alternatives),
                           "extracted": _extracted(lm, canaries)}
    ctx.report("intervals and figures", 1.0)

    small, large, dedup = f"d{min(cfg.sizes)}", f"d{max(cfg.sizes)}", arms[-1][0]
    seeds = list(cfg.train_seeds)
    exp = {label: np.concatenate([found[label][t]["exposure"] for t in seeds]) for label in found}
    hit = {label: np.concatenate([found[label][t]["extracted"] for t in seeds]) for label in found}
    run_of = np.repeat(seeds, len(canaries))          # rows: (training run, canary)
    canary = np.tile(np.arange(len(canaries)), len(seeds))
    g = np.tile(group, len(seeds))
    top, once, never = g == len(cfg.copies) - 1, g == 0, g == len(cfg.copies)
    chance = CHANCE
    draws = seed_cluster_resamples(run_of, canary, cfg.n_boot, ctx.seed)

    def estimate(stat) -> Estimate:
        return from_draws(stat(np.arange(run_of.size)), [stat(i) for i in draws], run_of.size,
                          SEEDS_THEN_CANARIES)

    def mean(values: np.ndarray, sel: np.ndarray):
        return lambda i: float(values[i][sel[i]].mean()) if sel[i].any() else float("nan")

    def gain(i):  # most copies minus once, largest model
        return mean(exp[large], top)(i) - mean(exp[large], once)(i)

    planted_rows = ~never
    metrics: dict[str, Estimate] = {
        "exposure_gain": estimate(gain),
        "size_gain": estimate(lambda i: mean(exp[large] - exp[small], planted_rows)(i)),
        "dedup_drop": estimate(lambda i: mean(exp[large] - exp[dedup], top)(i)),
        "dedup_share": estimate(lambda i: mean(exp[large] - exp[dedup], top)(i) / gain(i)
                                if gain(i) > 0 else float("nan")),
    }
    for label in found:
        for k, c in enumerate(cfg.copies):
            metrics[f"exposure@{label}/x{c}"] = estimate(mean(exp[label], g == k))
            metrics[f"extraction@{label}/x{c}"] = estimate(mean(hit[label].astype(float), g == k))
    control = {"exposure_lift": estimate(lambda i: mean(exp[large], never)(i) - chance),
               "extraction": estimate(mean(hit[large].astype(float), never))}
    tiled = np.tile(copies, len(seeds))
    rows = [{"model": label, "copies": int(c), "canaries": int((copies == c).sum()),
             "exposure (bits)": round(float(exp[label][tiled == c].mean()), 3),
             "extracted": round(float(hit[label][tiled == c].mean()), 3)}
            for label in found for c in list(cfg.copies) + [0]]
    shown = [{"canary": f"{p} {s}.", "copies": int(c),
              **{f"exposure {label}": round(float(found[label][seeds[0]]["exposure"][i]), 2)
                 for label in found}}
             for i, ((p, s), c) in enumerate(zip(canaries, copies)) if i % cfg.per_group == 0]
    notes = [f"exposure is extrapolated from {cfg.alternatives} random alternatives per canary "
             f"(a normal fit to their log-likelihoods); chance is {chance:.2f} bits",
             f"every model trained {len(seeds)} time(s), training seeds "
             f"{', '.join(map(str, seeds))} ({cfg.steps} steps of 16 x 128 tokens each); "
             "intervals resample training runs, then canaries; the deduplicated corpus keeps "
             f"each of the {len(dict.fromkeys(planted))} planted canaries once"]
    if len(seeds) == 1:
        notes.append("one training run per model: the intervals hold no training-run "
                     "variance; the full profile trains three")
    figure = _figure(ctx, exp, hit, tiled, cfg, chance)
    return Result(metrics=metrics, tables={"arms": rows, "canaries": shown}, figures=[figure],
                  notes=notes, control=Control(metrics=control, condition=(
                      f"{cfg.unplanted} canaries of the same format never planted, read on "
                      f"the largest model")))


def _digits(rng: random.Random) -> str:
    return " ".join(str(rng.randrange(10)) for _ in range(DIGITS))


def _canaries(world, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` (prefix, secret) pairs, each name invented and sharing no word with any name in
    the world."""
    maker = NameMaker(random.Random(f"canaries-{rng.random()}"))
    maker._words.update(w.lower() for name in world.entities for w in name.replace(".", "").split())
    return [(f"The access code of {maker.person()} is", _digits(rng))
            for _ in range(n)]


def _exposure(lm: LM, canaries, alternatives) -> np.ndarray:
    """Per canary, -log2 of the share of all digit strings a model would rank above the true
    one, extrapolated as Carlini et al. (2019) do: a normal fit to the log-likelihoods of the
    R random alternatives gives that share as a tail probability, so exposure is not capped
    at log2(R + 1) the way a rank among R alternatives is."""
    out = []
    for (prefix, secret), others in zip(canaries, alternatives):
        candidates = [secret] + others
        scores = np.array([s.logprob for s in lm.score([prefix] * len(candidates),
                                                       [f" {c}." for c in candidates],
                                                       batch_size=256)])
        mu, sd = scores[1:].mean(), max(scores[1:].std(ddof=1), 1e-12)
        out.append(-norm.logsf((scores[0] - mu) / sd) / np.log(2))
    return np.minimum(np.array(out), MOST)  # past 1 in 10^6 the tail outruns the space


def _extracted(lm: LM, canaries) -> np.ndarray:
    """Whether greedy decoding from each prefix emits its six digits exactly."""
    replies = lm.generate([p for p, _ in canaries], max_new_tokens=16)
    return np.array([[w.rstrip(".") for w in r.split()[:DIGITS]] == s.split()
                     for r, (_, s) in zip(replies, canaries)])


def _figure(ctx: Context, exp, hit, copies, cfg: Config, chance: float) -> str:
    fig, axes = new_figure(width=4.4, height=3.8, ncols=2)
    for label in exp:
        for ax, values in ((axes[0], exp[label]), (axes[1], hit[label].astype(float))):
            est = [bootstrap(values[copies == c], n_boot=1000, seed=ctx.seed) for c in cfg.copies]
            y, err = errorbars(est)
            ax.errorbar(cfg.copies, y, yerr=err, marker="o", capsize=2, label=label,
                        ls="--" if "dedup" in label else "-")
    axes[0].axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    axes[0].set_ylabel("exposure (bits)")
    axes[1].set_ylabel("share extracted verbatim")
    axes[1].set_ylim(-0.05, 1.05)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("copies in the training corpus")
        ax.legend(fontsize=7)
    axes[0].set_title("Exposure of planted canaries")
    axes[1].set_title("Extraction from the prefix")
    save_figure(fig, ctx.artifact("memorization.png"))
    return "memorization.png"
