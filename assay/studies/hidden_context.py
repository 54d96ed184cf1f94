"""A reward model trained on pooled preferences aggregates them like a Borda count (4.1).

Claim (Siththaranjan, Laidlaw and Hadfield-Menell 2024, ICLR, arXiv 2312.08358): when
annotators differ in ways the data does not record (hidden context), a reward model fitted
with the Bradley-Terry loss to their pooled comparisons ranks outcomes by their Borda count,
which can override what a majority of annotators prefers.

Setup: synthetic scenarios with planted utilities (`assay.methods.preferences`): ``outcomes``
outcomes, ``groups`` annotator groups, each with utilities drawn from N(0, 1) and
Bradley-Terry choices at sharpness ``scale``, and group shares drawn from a flat Dirichlet.
An annotator is drawn from the groups by share, so each pooled comparison hides which group
made it. Only scenarios where a Condorcet winner exists (a majority prefers it to every
other outcome) and differs from the Borda winner are kept: there the two aggregations make
different predictions. A linear reward on one-hot outcome features (the tabular
Bradley-Terry model, a small head) is fitted to ``comparisons`` sampled choices per
scenario. Its winner and its ranking are compared with the Borda count, with pairwise
majority (Copeland) and with each group, all computed exactly from the planted utilities.
Reward models on an organism's features are not run in this slice.

In this tabular setting (one-hot features, pairs drawn uniformly) the fit's optimum ranks
outcomes exactly by Borda count (its score equations set each outcome's expected wins to its
Borda score): the paper's result is a theorem here, and what the study measures is how
nearly a fit on finite, noisy comparisons realises it, and how often that overrides a
majority. Because the kept scenarios are those where the two winners differ, following
Borda implies overriding the majority; part (1) is reported for the reader, part (2) decides.

Verdict: `rule`, over scenarios (each an independent draw of groups and choices): (1) the
share of scenarios whose learned winner is not the majority's winner, and (2) the share
whose learned winner is the Borda winner, each against 0.5 (Wilson). Supported when both
lie above, not supported when either lies below, inconclusive otherwise.

Negative control: `control_rule` on scenarios with one group only, so Borda and majority
agree and the reward must recover that group's winner: a learned winner that leaves the
group's in most scenarios (a broken fit, a sign error, shuffled outcomes) fires it. It reads
part (1) alone, since with one group no fit can follow Borda without following the majority.

Power: 200 scenarios give Wilson intervals of about +-0.07, so a share of about 0.6 is the
smallest told from 0.5 with 80% power. Time: a few seconds (logistic regressions).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.preferences import (
    borda,
    bradley_terry,
    choice_probabilities,
    condorcet_winner,
    copeland,
    mixture,
    rank_agreement,
    sample_choices,
)
from assay.methods.stats import Estimate, bootstrap, paired_bootstrap, wilson
from assay.study import Above, AllOf, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure


class Config(StudyConfig):
    scenarios: int = Field(200, ge=10)      # scenarios kept (Condorcet winner != Borda winner)
    outcomes: int = Field(6, ge=3)          # outcomes ranked in each scenario
    groups: int = Field(3, ge=2)            # annotator groups with their own utilities
    scale: float = Field(3.0, gt=0)         # sharpness of each group's Bradley-Terry choices
    comparisons: int = Field(3000, ge=50)   # pooled comparisons the reward model is fitted on
    bar: float = Field(0.5, gt=0, lt=1)     # share of scenarios each part must exceed
    n_boot: int = Field(2000, ge=100)       # bootstrap resamples of scenarios

    FULL = {"scenarios": 1000}


def rule(cfg: Config) -> AllOf:
    """The learned winner leaves the majority's and takes Borda's."""
    return AllOf(
        Above("overrides_majority", bar=cfg.bar,
              what="share of scenarios whose learned winner is not the majority's winner"),
        Above("follows_borda", bar=cfg.bar,
              what="share of scenarios whose learned winner is the Borda winner"),
        says={"supported": "the reward model aggregates like a Borda count, against the majority",
              "not supported": "the reward model keeps the majority's winner"})


def control_rule(cfg: Config) -> Above:
    """With one group, the learned winner must be the group's."""
    return Above("overrides_majority", bar=cfg.bar,
                 what="share of scenarios whose learned winner is not the majority's winner",
                 says={"supported": "the fit leaves a single group's winner (broken)",
                       "not supported": "the fit recovers a single group's winner"})


@study("hidden-context", agenda=["4.1"], needs=Needs(white_box=False, chat=False, model=False),
       rule=rule, control=control_rule)
def run(cfg: Config, ctx: Context) -> Result:
    rng = np.random.default_rng(ctx.seed)
    mixed, tried = [], 0
    while len(mixed) < cfg.scenarios:
        tried += 1
        if tried > 200 * cfg.scenarios:
            raise ValueError(f"only {len(mixed)} of {tried - 1} drawn scenarios had a Condorcet "
                             "winner other than the Borda winner: raise scale or outcomes")
        scenario = _scenario(cfg, cfg.groups, rng)
        if scenario is not None:
            mixed.append(scenario)
            if len(mixed) % 20 == 0:
                ctx.report(f"{len(mixed)}/{cfg.scenarios} scenarios fitted", 0.8 * len(mixed) / cfg.scenarios)
    single = [_scenario(cfg, 1, rng) for _ in range(cfg.scenarios)]
    metrics = _metrics(mixed, cfg, ctx.seed)
    tables = {"scenarios": [_row(s, i) for i, s in enumerate(mixed[:12])],
              "classic example": _classic(cfg, rng)}
    return Result(
        metrics=metrics,
        control=Control(metrics=_metrics(single, cfg, ctx.seed),
                        condition="one annotator group: Borda and majority agree"),
        tables=tables,
        figures=[_figure(ctx, mixed, cfg)],
        notes=[f"{cfg.scenarios} of {tried} drawn scenarios had a Condorcet winner other than "
               "the Borda winner and were kept."])


def _scenario(cfg: Config, n_groups: int, rng: np.random.Generator) -> dict | None:
    utilities = rng.normal(0, 1, (n_groups, cfg.outcomes))
    weights = rng.dirichlet(np.ones(n_groups)) if n_groups > 1 else np.ones(1)
    p = mixture([choice_probabilities(u, cfg.scale) for u in utilities], weights)
    winner = condorcet_winner(p)
    b = borda(p)
    if n_groups > 1 and (winner is None or winner == int(b.argmax())):
        return None
    choices = sample_choices(p, cfg.comparisons, rng)
    reward = bradley_terry(choices, np.eye(cfg.outcomes))
    return {"p": p, "borda": b, "copeland": copeland(p), "condorcet": winner,
            "reward": reward, "utilities": utilities, "weights": weights}


def _metrics(scenarios: list[dict], cfg: Config, seed: int) -> dict[str, Estimate]:
    learned = np.array([int(s["reward"].argmax()) for s in scenarios])
    majority = np.array([s["condorcet"] for s in scenarios])
    borda_top = np.array([int(s["borda"].argmax()) for s in scenarios])
    tau_b = [rank_agreement(s["reward"], s["borda"]) for s in scenarios]
    tau_c = [rank_agreement(s["reward"], s["copeland"]) for s in scenarios]
    tau_big = [rank_agreement(s["reward"], s["utilities"][int(s["weights"].argmax())])
               for s in scenarios]
    n = len(scenarios)
    return {
        "overrides_majority": wilson(int((learned != majority).sum()), n),
        "follows_borda": wilson(int((learned == borda_top).sum()), n),
        "tau_borda": bootstrap(tau_b, n_boot=cfg.n_boot, seed=seed),
        "tau_majority": bootstrap(tau_c, n_boot=cfg.n_boot, seed=seed),
        "tau_borda_minus_majority": paired_bootstrap(tau_b, tau_c, n_boot=cfg.n_boot, seed=seed),
        "tau_largest_group": bootstrap(tau_big, n_boot=cfg.n_boot, seed=seed),
    }


def _row(s: dict, i: int) -> dict:
    return {"scenario": i, "group shares": ", ".join(f"{w:.2f}" for w in s["weights"]),
            "majority winner": s["condorcet"], "Borda winner": int(s["borda"].argmax()),
            "learned winner": int(s["reward"].argmax()),
            "Borda scores": ", ".join(f"{v:.2f}" for v in s["borda"]),
            "learned rewards": ", ".join(f"{v:.2f}" for v in s["reward"] - s["reward"].mean())}


def _classic(cfg: Config, rng: np.random.Generator) -> list[dict]:
    """60% rank a > b > c, 40% rank b > c > a (deterministic choices): a wins every
    majority vote, b the Borda count; what does the fitted reward pick?"""
    first = np.array([[0.5, 1, 1], [0, 0.5, 1], [0, 0, 0.5]])
    second = np.array([[0.5, 0, 0], [1, 0.5, 1], [1, 0, 0.5]])
    p = mixture([first, second], np.array([0.6, 0.4]))
    reward = bradley_terry(sample_choices(p, cfg.comparisons, rng), np.eye(3))
    return [{"outcome": name, "Borda score": round(float(borda(p)[i]), 3),
             "majority wins": float(copeland(p)[i]),
             "learned reward": round(float(reward[i] - reward.mean()), 3)}
            for i, name in enumerate("abc")]


def _figure(ctx: Context, scenarios: list[dict], cfg: Config) -> str:
    fig, (left, right) = new_figure(4.2, 3.4, ncols=2)
    for s in scenarios[:60]:
        r = (s["reward"] - s["reward"].mean()) / (s["reward"].std() or 1)
        b = (s["borda"] - s["borda"].mean()) / (s["borda"].std() or 1)
        c = (s["copeland"] - s["copeland"].mean()) / (s["copeland"].std() or 1)
        left.scatter(b, r, s=6, color="tab:blue", alpha=0.5)
        left.scatter(c, r, s=6, color="tab:orange", alpha=0.3)
    left.scatter([], [], color="tab:blue", label="Borda score")
    left.scatter([], [], color="tab:orange", label="majority wins")
    left.set_xlabel("aggregate score (standardised)")
    left.set_ylabel("learned reward (standardised)")
    left.legend(fontsize=7)
    learned = np.array([int(s["reward"].argmax()) for s in scenarios])
    shares = [np.mean(learned == np.array([int(s["borda"].argmax()) for s in scenarios])),
              np.mean(learned == np.array([s["condorcet"] for s in scenarios]))]
    right.bar(["Borda winner", "majority winner"], shares, color=["tab:blue", "tab:orange"])
    right.axhline(cfg.bar, color="k", ls=":", lw=1)
    right.set_ylim(0, 1)
    right.set_ylabel("share of scenarios the learned winner is")
    save_figure(fig, ctx.artifact("hidden_context.png"))
    return "hidden_context.png"
