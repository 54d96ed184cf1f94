"""Pricing algorithms learn to collude without communicating (2.6).

Claim (Calvano, Calzolari, Denicolo and Pastorello 2020, American Economic Review 110(10)):
independent Q-learning agents that set prices in a repeated Bertrand game with logit demand
learn prices well above the competitive level (their baseline's profit gain index is about
0.85) without communicating, and sustain them with a reward-punishment scheme: a rival that
undercuts is met by a price cut that makes the deviation unprofitable.

Setup: `assay.methods.multiagent` with the paper's baseline: two firms, a_i = 2, a_0 = 0,
c = 1, mu = 0.25, discount 0.95; 15 prices from the Nash price (1.473) to the monopoly price
(1.925) widened by a tenth of their gap on each side; memory one (an agent's state is last
period's two prices); alpha = 0.15, exploration exp(-beta t) with beta = 4e-6; Q starts at
the discounted profit against a rival who prices at random; a session stops when no greedy
action has changed for 100,000 periods (capped at 10 million; the share that converged is
reported, and only converged sessions are read). Per session: the profit gain over its
limit cycle, and the impulse response of a one-period deviation of firm 0 to its one-shot
best response, then greedy play: the session *punishes* when the rival's price the period
after is below what it would have been and the deviator's discounted profit over 100
periods is below that of not deviating. The claim's own LLM extension (Fish et al. 2024,
arXiv 2404.00806: LLM pricing agents reach supra-competitive prices) is not run: no organism
is trained to price, and no API model is reachable in CI.

Verdict: `rule`, both parts over sessions (the unit that varies: each session is one
independent learning run): (1) the mean profit gain against 0.5, half way from competition
to monopoly (bootstrap over sessions); (2) the share of sessions that punish a deviation
against 0.5 (Wilson). Supported when both clear their bars, not supported when either lies
below, inconclusive otherwise.

Negative control: the same game and rule with memory zero, so an agent has one state and
cannot condition on the other's price. With a correct state encoding no memoryless strategy
can answer a deviation, so part (2) reads 0 by construction: the control fires only if the
state leaks the past, so it checks the encoding and the deviation reading, not the learner.
It is also the comparison the claim needs: measured, memoryless agents still settle at high
prices (profit gain about 0.95 on the quick profile), because once exploration stops the
prices they did not play keep the stale values they had when last tried; part (1) alone
cannot tell collusion from a failure to learn, which is why the rule has two parts.

Power: over 100 sessions the profit gain's interval is about +-0.02 (session standard
deviation about 0.1), so a mean gain of about 0.53 is the smallest told from the bar with
80% power; the punishment share's Wilson interval is about +-0.1, so a share of about 0.64.
The full profile's 1000 sessions (the paper's count) shrink both by about three. Time: the
quick profile took 36 s on 2 cores (100 sessions of each memory, about 2 million periods
each, compiled); the full profile 7 to 11 minutes per seed while the cores were shared.
Measured: quick, seed 0, profit gain 0.858 [0.836, 0.879], punished 0.90 [0.82, 0.94];
full, seeds 0-2, profit gain 0.850, 0.848, 0.856 (the paper's 0.85), punished 0.89-0.90.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay.methods.multiagent import Market, cycle_profit, deviate, price_grid, profit_gain, q_learning
from assay.methods.stats import Estimate, bootstrap, wilson
from assay.study import Above, AllOf, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure

AFTER = 15  # periods of the impulse response drawn after the deviation


class Config(StudyConfig):
    sessions: int = Field(100, ge=10)          # independent learning runs per memory
    alpha: float = Field(0.15, gt=0, le=1)     # Q-learning rate
    beta: float = Field(4e-6, gt=0)            # exploration decay: explore with exp(-beta t)
    prices: int = Field(15, ge=3)              # points of the price grid
    xi: float = Field(0.1, ge=0)               # grid widening beyond Nash and monopoly prices
    mu: float = Field(0.25, gt=0)              # product differentiation of logit demand
    discount: float = Field(0.95, gt=0, lt=1)  # discount factor
    converge_after: int = Field(100_000, ge=100)  # periods without a greedy change to stop
    max_periods: int = Field(10_000_000, ge=1000)  # cap on periods per session
    horizon: int = Field(100, ge=10)           # periods a deviation's profit is summed over
    gain_bar: float = Field(0.5, gt=-1, lt=1.2)   # profit gain the claim needs
    punish_bar: float = Field(0.5, gt=0, lt=1)    # share of sessions that must punish
    n_boot: int = Field(2000, ge=100)          # bootstrap resamples of sessions

    FULL = {"sessions": 1000}


def rule(cfg: Config) -> AllOf:
    """Prices well above competition, and deviations punished."""
    return AllOf(
        Above("profit_gain", bar=cfg.gain_bar, low=-1.0, high=1.2,
              what="mean profit gain over sessions (0 Nash, 1 monopoly)"),
        Above("punished", bar=cfg.punish_bar, low=0.0, high=1.0,
              what="share of sessions where a deviation is met by a price cut and does not pay"),
        says={"supported": "the agents learn supra-competitive prices and punish deviations",
              "not supported": "the agents price near competition, or do not punish deviations"})


@study("algorithmic-collusion", agenda=["2.6"],
       needs=Needs(white_box=False, chat=False, model=False), rule=rule)
def run(cfg: Config, ctx: Context) -> Result:
    market = Market(mu=cfg.mu, delta=cfg.discount)
    grid = price_grid(market, cfg.prices, cfg.xi)
    arms = {}
    for i, memory in enumerate((1, 0)):
        ctx.report(f"Q-learning, memory {memory}: {cfg.sessions} sessions", 0.5 * i)
        learned = q_learning(
            market, grid, sessions=cfg.sessions, memory=memory, alpha=cfg.alpha, beta=cfg.beta,
            converge_after=cfg.converge_after, max_periods=cfg.max_periods, seed=ctx.seed + memory,
            on_progress=lambda done, total, i=i, memory=memory: ctx.report(
                f"memory {memory}: {done}/{total} sessions learned", 0.5 * i + 0.45 * done / total))
        arms[memory] = _read(learned, cfg)
    metrics, control = _metrics(arms[1], cfg, ctx.seed), _metrics(arms[0], cfg, ctx.seed)
    return Result(
        metrics=metrics,
        control=Control(metrics=control, condition="memory zero: agents that cannot condition "
                        "on past prices, so no strategy can answer a deviation"),
        tables={"sessions": [_row(arms[m], j, m) for m in (1, 0) for j in range(min(10, cfg.sessions))],
                "impulse response": _impulse_table(arms[1])},
        figures=[_figure(ctx, arms, market, grid, cfg)],
        notes=[f"Nash price {market.nash_price():.4f}, monopoly price {market.monopoly_price():.4f}; "
               f"grid {grid[0]:.3f} to {grid[-1]:.3f} in {cfg.prices} steps.",
               *(f"Memory {m}: {arms[m]['converged'].sum()} of {cfg.sessions} sessions converged "
                 f"(median {int(np.median(arms[m]['periods'])):,} periods); only those are read."
                 for m in (1, 0))])


def _read(learned, cfg: Config) -> dict[str, np.ndarray]:
    """Per session: profit gain over the limit cycle, deviation outcomes and price paths."""
    n = cfg.sessions
    gains, cycle_price, punished, deviated, dev_gain, cut, paths = [], [], [], [], [], [], []
    for j in range(n):
        prices, profits, _ = cycle_profit(learned, j)
        gains.append(float(profit_gain(profits.mean(), learned.market)))
        cycle_price.append(float(prices.mean()))
        d = deviate(learned, j, cfg.horizon)
        deviated.append(d.deviated)
        punished.append(d.deviated and d.rival_after < d.rival_undisturbed and d.deviator_gain < 0)
        dev_gain.append(d.deviator_gain)
        cut.append(d.rival_undisturbed - d.rival_after)
        paths.append(d.path[: AFTER + 1])
    return {"gain": np.array(gains), "price": np.array(cycle_price),
            "punished": np.array(punished), "deviated": np.array(deviated),
            "deviation_gain": np.array(dev_gain), "rival_cut": np.array(cut),
            "paths": np.array(paths), "converged": learned.converged.copy(),
            "periods": learned.periods.copy()}


def _metrics(arm: dict[str, np.ndarray], cfg: Config, seed: int) -> dict[str, Estimate]:
    ok = arm["converged"]
    read = ok & arm["deviated"]
    return {
        "profit_gain": bootstrap(arm["gain"][ok], n_boot=cfg.n_boot, seed=seed),
        "punished": wilson(int(arm["punished"][read].sum()), int(read.sum())),
        "mean_price": bootstrap(arm["price"][ok], n_boot=cfg.n_boot, seed=seed),
        "rival_price_cut": bootstrap(arm["rival_cut"][read], n_boot=cfg.n_boot, seed=seed),
        "deviation_pays": wilson(int((arm["deviation_gain"][read] > 0).sum()), int(read.sum())),
        "converged": wilson(int(ok.sum()), len(ok)),
    }


def _row(arm: dict[str, np.ndarray], j: int, memory: int) -> dict:
    return {"memory": memory, "session": j, "converged": bool(arm["converged"][j]),
            "periods": int(arm["periods"][j]), "profit gain": round(float(arm["gain"][j]), 3),
            "mean price": round(float(arm["price"][j]), 3),
            "rival's cut after a deviation": round(float(arm["rival_cut"][j]), 3),
            "punished": bool(arm["punished"][j])}


def _impulse_table(arm: dict[str, np.ndarray]) -> list[dict]:
    mean = arm["paths"][arm["converged"] & arm["deviated"]].mean(0)
    return [{"period after deviation": t, "deviator's price": round(float(mean[t, 0]), 4),
             "rival's price": round(float(mean[t, 1]), 4)} for t in range(len(mean))]


def _figure(ctx: Context, arms, market: Market, grid: np.ndarray, cfg: Config) -> str:
    fig, (left, right) = new_figure(4.4, 3.4, ncols=2)
    bins = np.linspace(min(-0.2, min(a["gain"][a["converged"]].min() for a in arms.values())), 1.05, 30)
    for memory, color in ((1, "tab:blue"), (0, "tab:grey")):
        left.hist(arms[memory]["gain"][arms[memory]["converged"]], bins=bins, alpha=0.6,
                  color=color, label=f"memory {memory}")
    left.axvline(cfg.gain_bar, color="k", ls=":", lw=1)
    left.set_xlabel("profit gain (0 Nash, 1 monopoly)")
    left.set_ylabel("sessions")
    left.legend(fontsize=7)
    for memory, ls in ((1, "-"), (0, "--")):
        read = arms[memory]["converged"] & arms[memory]["deviated"]
        mean = arms[memory]["paths"][read].mean(0)
        t = np.arange(len(mean))
        right.plot(t, mean[:, 0], color="tab:red", ls=ls, marker="o", ms=3,
                   label=f"deviator, memory {memory}")
        right.plot(t, mean[:, 1], color="tab:blue", ls=ls, marker="o", ms=3,
                   label=f"rival, memory {memory}")
    right.axhline(market.nash_price(), color="grey", lw=0.8, ls=":", label="Nash price")
    right.axhline(market.monopoly_price(), color="grey", lw=0.8, ls="-.", label="monopoly price")
    right.set_xlabel("periods after firm 0's one-period deviation")
    right.set_ylabel("mean price over sessions")
    right.legend(fontsize=6)
    save_figure(fig, ctx.artifact("collusion.png"))
    return "collusion.png"
