"""Many learners in one market: a repeated Bertrand game with logit demand, and independent
Q-learning agents that price in it (challenge 2.6).

The game is the one of Calvano, Calzolari, Denicolo and Pastorello (2020, AER 110(10)):
``n`` firms sell differentiated goods at marginal cost ``c``; firm i's demand is

    q_i = exp((a_i - p_i) / mu) / (sum_j exp((a_j - p_j) / mu) + exp(a_0 / mu))

and its profit ``(p_i - c) q_i``. Each period every firm picks a price from a grid of ``m``
points spanning the one-shot Nash and the joint-monopoly price, widened by ``xi`` of their
gap on each side. An agent's state is the prices of the last ``memory`` periods (memory 0:
one state, so it cannot condition on what the others did).

`homogenisation` measures how much a pool of models fails together (algorithmic
monoculture), the other multi-agent risk the agenda names.

Sessions learn one after another in a compiled loop (numba): a session of Calvano et al.'s
baseline runs about a million periods before it converges, which is seconds compiled and
minutes in vectorised numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy.optimize import brentq

from assay.errors import AssayError
from assay.methods.stats import Estimate, cluster_resamples, from_draws, resamples


@dataclass(frozen=True)
class Market:
    """A symmetric logit Bertrand market. Defaults are Calvano et al.'s baseline."""

    n: int = 2              # firms
    a: float = 2.0          # product quality (the same for every firm)
    a0: float = 0.0         # the outside good's quality
    c: float = 1.0          # marginal cost
    mu: float = 0.25        # horizontal differentiation
    delta: float = 0.95     # discount factor

    def demand(self, prices: np.ndarray) -> np.ndarray:
        """(..., n) prices -> (..., n) quantities."""
        prices = np.asarray(prices, dtype=float)
        e = np.exp((self.a - prices) / self.mu)
        return e / (e.sum(-1, keepdims=True) + np.exp(self.a0 / self.mu))

    def profit(self, prices: np.ndarray) -> np.ndarray:
        """(..., n) prices -> (..., n) one-period profits."""
        prices = np.asarray(prices, dtype=float)
        return (prices - self.c) * self.demand(prices)

    def _symmetric_q(self, p: float) -> float:
        return float(self.demand(np.full(self.n, p))[0])

    def nash_price(self) -> float:
        """The symmetric one-shot Nash price: each firm's first-order condition
        ``p - c = mu / (1 - q_i)`` (from dq_i/dp_i = -q_i (1 - q_i) / mu) at equal prices."""
        return brentq(lambda p: p - self.c - self.mu / (1 - self._symmetric_q(p)),
                      self.c + 1e-9, self.c + 50 * self.mu + 10)

    def monopoly_price(self) -> float:
        """The symmetric price that maximises joint profit: ``p - c = mu / (1 - n q)``, the
        first-order condition of sum_j (p_j - c) q_j at equal prices."""
        return brentq(lambda p: p - self.c - self.mu / (1 - self.n * self._symmetric_q(p)),
                      self.c + 1e-9, self.c + 50 * self.mu + 10)

    def best_response(self, others: np.ndarray, grid: np.ndarray) -> float:
        """The grid price that maximises firm 0's one-period profit when the other firms
        charge ``others`` (n-1,)."""
        prices = np.column_stack([grid, np.broadcast_to(np.asarray(others, dtype=float),
                                                        (len(grid), self.n - 1))])
        return float(grid[self.profit(prices)[:, 0].argmax()])


def price_grid(market: Market, m: int = 15, xi: float = 0.1) -> np.ndarray:
    """``m`` equally spaced prices from ``p_N - xi (p_M - p_N)`` to ``p_M + xi (p_M - p_N)``."""
    p_n, p_m = market.nash_price(), market.monopoly_price()
    return np.linspace(p_n - xi * (p_m - p_n), p_m + xi * (p_m - p_n), m)


def profit_gain(profit: np.ndarray | float, market: Market) -> np.ndarray | float:
    """Calvano et al.'s index: (profit - Nash profit) / (monopoly profit - Nash profit);
    0 at the competitive outcome, 1 at joint monopoly."""
    pi_n = market.profit(np.full(market.n, market.nash_price()))[0]
    pi_m = market.profit(np.full(market.n, market.monopoly_price()))[0]
    return (np.asarray(profit) - pi_n) / (pi_m - pi_n)


@dataclass
class Sessions:
    """What independent Q-learning left in each session."""

    market: Market
    grid: np.ndarray
    memory: int
    q: np.ndarray                 # (n, sessions, states, m) final Q-tables
    state: np.ndarray             # (sessions,) the state each session stopped in
    converged: np.ndarray         # (sessions,) bool
    periods: np.ndarray           # (sessions,) periods until convergence (or the cap)
    greedy: np.ndarray = field(init=False)  # (n, sessions, states) greedy action indices

    def __post_init__(self) -> None:
        self.greedy = self.q.argmax(-1)

    @property
    def m(self) -> int:
        return len(self.grid)

    def next_state(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return next_state(state, actions, self.m, self.market.n, self.memory)


def n_states(m: int, n: int, memory: int) -> int:
    return m ** (n * memory)


def next_state(state: np.ndarray, actions: np.ndarray, m: int, n: int, memory: int) -> np.ndarray:
    """The state after ``actions`` (n, sessions): the last ``memory`` periods' action indices,
    newest last, as one base-m number."""
    if memory == 0:
        return np.zeros_like(state)
    code = np.zeros_like(state)
    for i in range(n):
        code = code * m + actions[i]
    keep = m ** (n * (memory - 1))
    return (state % keep) * m ** n + code


def q_learning(market: Market, grid: np.ndarray, *, sessions: int, memory: int = 1,
               alpha: float = 0.15, beta: float = 4e-6, converge_after: int = 100_000,
               max_periods: int = 2_000_000, seed: int = 0,
               on_progress: Callable[[int, int], None] | None = None) -> Sessions:
    """Independent Q-learning of two firms in ``sessions`` copies of the game.

    Each agent explores with probability ``exp(-beta t)`` (a uniform price), and otherwise
    plays the action with the highest Q in its state; after the period,
    ``Q(s, a) <- (1 - alpha) Q(s, a) + alpha (profit + delta max_a' Q(s', a'))``. Q starts at
    the discounted profit of each action against a rival who prices uniformly at random, as
    in the paper. A session stops once no agent's greedy action has changed, in any state,
    for ``converge_after`` periods (an update can change the greedy action only in the state
    it touched, so checking that state is exact); ``max_periods`` caps the rest
    (``converged`` says which reached the criterion). Session ``j`` draws from its own
    generator seeded by ``(seed, j)``, so a session's path does not depend on how many run.
    ``on_progress(done, sessions)`` is called as sessions finish.
    """
    if market.n != 2:
        raise ValueError(f"q_learning plays two firms (the paper's baseline); got n={market.n}")
    if memory not in (0, 1, 2):
        raise ValueError(f"memory must be 0, 1 or 2 periods; got {memory}")
    m = len(grid)
    states = n_states(m, 2, memory)
    profiles = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1)
    payoff = market.profit(profiles)                                 # (m, m, 2)
    q0 = np.stack([payoff[..., 0].mean(1), payoff[..., 1].mean(0)]) / (1 - market.delta)
    q = np.broadcast_to(q0[:, None, None, :], (2, sessions, states, m)).copy()
    seeds = np.random.SeedSequence(seed).generate_state(sessions, dtype=np.uint32)
    seeds = seeds.astype(np.int64) % (2 ** 31)
    start = np.array([np.random.default_rng(s).integers(0, states) for s in seeds],
                     dtype=np.int64)
    state = np.zeros(sessions, dtype=np.int64)
    periods = np.zeros(sessions, dtype=np.int64)
    converged = np.zeros(sessions, dtype=np.bool_)
    chunk = max(1, sessions // 20)
    for lo in range(0, sessions, chunk):
        hi = min(sessions, lo + chunk)
        _learn(payoff[..., 0].copy(), payoff[..., 1].copy(), q[:, lo:hi], m, memory, alpha, beta,
               market.delta, converge_after, max_periods, seeds[lo:hi], start[lo:hi],
               state[lo:hi], periods[lo:hi], converged[lo:hi])
        if on_progress is not None:
            on_progress(hi, sessions)
    return Sessions(market, grid, memory, q, state, converged, periods)


@numba.njit(cache=False)
def _argmax(row: np.ndarray) -> int:
    best, arg = row[0], 0
    for a in range(1, row.shape[0]):
        if row[a] > best:
            best, arg = row[a], a
    return arg


@numba.njit(cache=False)
def _learn(pay0, pay1, q, m, memory, alpha, beta, delta, converge_after, max_periods, seeds,
           start, out_state, out_periods, out_converged):  # pragma: no cover (compiled)
    keep = m ** (2 * (memory - 1)) if memory > 0 else 1
    for j in range(seeds.shape[0]):
        np.random.seed(seeds[j])
        q0, q1 = q[0, j], q[1, j]
        s = start[j]
        stable, t = 0, 0
        while t < max_periods and stable < converge_after:
            eps = np.exp(-beta * t)
            g0, g1 = _argmax(q0[s]), _argmax(q1[s])
            a0 = np.random.randint(0, m) if np.random.random() < eps else g0
            a1 = np.random.randint(0, m) if np.random.random() < eps else g1
            s2 = (s % keep) * m * m + a0 * m + a1 if memory > 0 else 0
            f0, f1 = q0[s2, _argmax(q0[s2])], q1[s2, _argmax(q1[s2])]
            q0[s, a0] += alpha * (pay0[a0, a1] + delta * f0 - q0[s, a0])
            q1[s, a1] += alpha * (pay1[a0, a1] + delta * f1 - q1[s, a1])
            if _argmax(q0[s]) != g0 or _argmax(q1[s]) != g1:
                stable = 0
            else:
                stable += 1
            s = s2
            t += 1
        out_state[j] = s
        out_periods[j] = t
        out_converged[j] = stable >= converge_after


def limit_path(s: Sessions, session: int, start: int | None = None,
               max_len: int | None = None) -> tuple[list[int], list[np.ndarray]]:
    """Greedy play of one session from ``start`` (default: where it stopped) until a state
    repeats. Returns the states visited and each period's actions; the cycle is the part
    from the first visit of the repeated state."""
    state = int(s.state[session] if start is None else start)
    seen: dict[int, int] = {}
    states, actions = [], []
    limit = max_len or n_states(s.m, s.market.n, s.memory) + 1
    while state not in seen and len(states) < limit:
        seen[state] = len(states)
        acts = s.greedy[:, session, state]
        states.append(state)
        actions.append(acts)
        state = int(s.next_state(np.array([state]), acts[:, None])[0])
    first = seen.get(state, 0)
    return states[first:], actions[first:]


def cycle_profit(s: Sessions, session: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The mean prices (n,) and profits (n,) over the session's limit cycle, and its length."""
    _, actions = limit_path(s, session)
    prices = s.grid[np.array(actions)]
    return prices.mean(0), s.market.profit(prices).mean(0), len(actions)


@dataclass(frozen=True)
class Deviation:
    """Agent 0 undercuts once to its one-shot best response, then play is greedy again."""

    rival_undisturbed: float  # the rival's price in the period after, had nobody deviated
    rival_after: float        # its price in the period after the deviation
    deviator_gain: float      # discounted profit of deviating minus not deviating
    deviated: bool            # False when the best response equals the cycle price
    path: np.ndarray          # (horizon, n) prices from the deviation on


def deviate(s: Sessions, session: int, horizon: int = 100) -> Deviation:
    """The impulse response of one session: from a state on its limit cycle, agent 0 plays
    its one-shot best response to the rivals' price for one period, then every agent follows
    its greedy strategy for ``horizon`` periods. The gain compares agent 0's discounted
    profit on this path with the path without the deviation."""
    states, _ = limit_path(s, session)
    start = states[0]
    market, delta = s.market, s.market.delta

    def path(deviate_now: bool) -> tuple[np.ndarray, float]:
        state, total, prices_seen = start, 0.0, []
        for t in range(horizon):
            acts = s.greedy[:, session, state].copy()
            if deviate_now and t == 0:
                best = market.best_response(s.grid[acts[1:]], s.grid)
                acts[0] = int(np.flatnonzero(s.grid == best)[0])
            prices = s.grid[acts]
            total += delta ** t * float(market.profit(prices)[0])
            prices_seen.append(prices)
            state = int(s.next_state(np.array([state]), acts[:, None])[0])
        return np.array(prices_seen), total

    base, base_total = path(False)
    dev, dev_total = path(True)
    return Deviation(rival_undisturbed=float(base[1, 1]), rival_after=float(dev[1, 1]),
                     deviator_gain=dev_total - base_total,
                     deviated=bool(dev[0, 0] != base[0, 0]), path=dev)


def homogenisation_ratio(correct: np.ndarray) -> float:
    """The ratio itself for a (models, items) 0/1 array; NaN when no model fails anywhere."""
    wrong = 1 - np.asarray(correct, dtype=float)
    expected = np.prod(wrong.mean(1))
    return float(wrong.prod(0).mean() / expected) if expected > 0 else np.nan


def homogenisation(correct: np.ndarray, clusters=None, n_boot: int = 2000,
                   seed: int | None = 0) -> Estimate:
    """The homogenisation ratio of a pool of models (Bommasani et al. 2022, "Picking on the
    Same Person", arXiv 2211.13972): the rate of items every model gets wrong, over the rate
    independence predicts (the product of each model's failure rate). 1 when failures are
    independent; above 1 when the models fail together. ``correct`` is (models, items) of
    0/1; intervals resample items, or whole ``clusters`` of them (questions about one
    person), and are NaN-free only where some model fails somewhere."""
    c = np.asarray(correct, dtype=float)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] < 2 or not np.isin(c, (0.0, 1.0)).all():
        raise AssayError("homogenisation needs a (models, items) array of 0/1 with at least "
                         "two models and two items")

    n = c.shape[1]
    picks = ([idx for idx, _ in cluster_resamples(clusters, n_boot, seed)] if clusters is not None
             else resamples(n, n_boot, seed))
    return from_draws(homogenisation_ratio(c), [homogenisation_ratio(c[:, p]) for p in picks], n,
                      method="bootstrap-clustered" if clusters is not None else "bootstrap")
