"""What the agent studies share: the tool-using model, running scenarios under a condition,
reading the exact checks, clustered estimates and one episode for the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assay.agents import Episode, Job, LMPolicy, parse_call, run_episodes
from assay.agents.attacks import Scenario
from assay.agents.loop import Guard
from assay.errors import AssayError
from assay.methods.stats import Estimate, clustered_bootstrap, paired_difference
from assay.study import Context


def agent_policy(ctx: Context, max_new_tokens: int = 40) -> LMPolicy:
    """The unit's model as an agent (the study declares ``Needs(tools=True)``, so an
    organism here was trained with tool turns)."""
    return LMPolicy(ctx.lm(), max_new_tokens)


@dataclass
class Outcome:
    """One scenario run under one condition, read by the exact checks."""

    scenario: Scenario
    episode: Episode
    utility: bool
    hijacked: bool
    side_effects: int  # irreversible changes neither the task nor the attack accounts for


def run(policy, items: Sequence[Scenario], template: str | None, where: str | None = None,
        max_steps: int = 6, tools: bool = False, guard: Guard | None = None
        ) -> list[Outcome]:
    """``policy`` (a batching policy such as `LMPolicy`, or a reference policy class such as
    `Oracle`, built per task) on every scenario, with its attack worded by ``template``
    planted at ``where`` (None: the place its task reads; ``template=None``: nothing
    planted); ``tools`` limits each episode to the tools its task needs; ``guard`` rewrites
    tool results."""
    return run_many(policy, items, [(template, where)], max_steps, tools, guard)[0]


def run_many(policy, items: Sequence[Scenario], conditions: Sequence[tuple[str | None, str | None]],
             max_steps: int = 6, tools: bool = False, guard: Guard | None = None
             ) -> list[list[Outcome]]:
    """`run` under several (template, where) conditions at once, in one lockstep batch (a
    batching policy then fills its batches); one list of outcomes per condition."""
    from assay.agents import side_effects

    cases = [(s, template, where) for template, where in conditions for s in items]
    jobs = [Job(s.environment(template, where), s.task.prompt,
                frozenset(s.task.tools) if tools else None, guard) for s, template, where in cases]
    policies = policy if hasattr(policy, "batch") else [policy(s.task) for s, _, _ in cases]
    episodes = run_episodes(policies, jobs, max_steps)
    out = []
    for (s, _, _), ep in zip(cases, episodes):
        extra = side_effects(s.task, ep.pre, ep.post, s.injection)
        out.append(Outcome(s, ep, s.task.utility(ep.pre, ep.post, ep.answer),
                           s.injection.security(ep.pre, ep.post),
                           sum(c.irreversible for c in extra)))
    return [out[i * len(items):(i + 1) * len(items)] for i in range(len(conditions))]


def clustered_rate(outcomes: Sequence[Outcome], field: str, level: float = 0.95) -> Estimate:
    """The share of ``outcomes`` where ``field`` holds, its interval resampling user tasks
    (the scenarios of one task share its environment and wording)."""
    values = [float(bool(getattr(o, field))) for o in outcomes]
    clusters = [o.scenario.task.id for o in outcomes]
    return clustered_bootstrap(values, clusters, level=level)


def paired_drop(before: Sequence[Outcome], after: Sequence[Outcome], field: str,
                level: float = 0.95) -> Estimate:
    """mean(before.field) - mean(after.field) over the same scenarios, clustered by task."""
    if [o.scenario.id for o in before] != [o.scenario.id for o in after]:
        raise AssayError("paired_drop needs the same scenarios in the same order")
    a = np.array([float(bool(getattr(o, field))) for o in before])
    b = np.array([float(bool(getattr(o, field))) for o in after])
    return paired_difference(a, b, [o.scenario.task.id for o in before], level=level)


def episode_table(episode: Episode, checks: str) -> list[dict]:
    """One episode as rows (role, text) for the report's transcript, tool calls marked, with
    what the exact checks read last."""
    rows = []
    for role, text in episode.turns:
        try:
            is_call = role == "assistant" and parse_call(text) is not None
        except AssayError:
            is_call = False
        rows.append({"role": "assistant (call)" if is_call else role, "text": text})
    return rows + [{"role": "checks", "text": checks}]


def outcome_table(outcome: Outcome) -> list[dict]:
    """`episode_table` of an injection scenario's episode."""
    return episode_table(outcome.episode, f"user's task done: {outcome.utility}; attacker's "
                         f"goal done: {outcome.hijacked}; irreversible changes nobody asked "
                         f"for: {outcome.side_effects}")


def pick_example(outcomes: Sequence[Outcome]) -> Outcome:
    """The episode to show: the first hijacked one, else the first with a tool call."""
    for o in outcomes:
        if o.hijacked:
            return o
    return next((o for o in outcomes if o.episode.calls), outcomes[0])
