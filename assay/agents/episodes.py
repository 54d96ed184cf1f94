"""Whole agent episodes as training material: the oracle at work on training tasks.

A tool-using organism learns the call protocol from `oracle_transcripts`: episodes of the
`Oracle` on training tasks (training wordings, training people) in environments drawn for
training users, with no injection anywhere. An organism trained on them has never seen an
instruction inside a tool result, either obeyed or refused, so whether it follows one is
what the injection studies measure rather than something its training decided.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assay.agents.env import Environment
from assay.agents.loop import Episode, Job, Policy, run_episode, run_episodes
from assay.agents.protocol import render_turns
from assay.agents.reference import Oracle
from assay.agents.tasks import UserTask, user_tasks
from assay.errors import AssayError
from assay.world import World
from assay.world.chat import END
from assay.world.reading import strangers

__all__ = ["Transcript", "heldout_tasks", "oracle_transcripts", "run_tasks"]


@dataclass(frozen=True)
class Transcript:
    """One episode as ``(role, text)`` turns: user, then assistant and tool turns, ending with
    the assistant's final answer."""

    task: str                           # the task's id and kind, e.g. "pay-3"
    turns: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        """The whole episode as a model reads it (final answer and its end token included)."""
        *before, (role, last) = self.turns
        if role != "assistant":
            raise AssayError("a transcript ends with the assistant's final answer")
        return render_turns(list(before)) + last + END


def oracle_transcripts(world: World, split: str = "train", n: int = 2000, seed: int = 0,
                       per_user: int = 12, max_steps: int = 6,
                       stranger_share: float = 0.0) -> list[Transcript]:
    """``n`` episodes of the oracle on ``split`` tasks, ``per_user`` tasks per environment,
    each environment drawn for a person of that split (training people for ``train``,
    held-out people for ``test``). In about ``stranger_share`` of the environments the tasks
    are about strangers of the split (`assay.world.reading`) added to the directory, whom
    nothing else names: names, cities and employers that must be copied, not recalled."""
    people = world.people("train" if split == "train" else "heldout")
    if not people:
        raise AssayError(f"the world has no {split} people to act for")
    rng = random.Random(f"oracle-transcripts-{seed}-{split}")
    out: list[Transcript] = []
    pool = strangers(world)[split]
    for k in range((n + per_user - 1) // per_user):
        user = rng.choice(people)
        about = rng.sample(pool, 8) if rng.random() < stranger_share else []
        env = Environment.build(world, user, seed=seed * 100_003 + k, strangers=about)
        for task in user_tasks(world, split, env, n=per_user, seed=seed * 100_003 + k,
                               people=[name for name, _ in about] or None):
            episode = run_episode(Oracle(task), Environment(env.user, env.snapshot()),
                                  task.prompt, max_steps)
            if episode.stopped != "answer":  # the oracle answers every task it can do
                raise AssayError(f"the oracle did not finish {task.id}: {episode.turns}")
            out.append(Transcript(task.id, tuple(episode.turns)))
            if len(out) == n:
                return out
    return out


def heldout_tasks(world: World, n: int = 60, seed: int = 0,
                  per_user: int = 6) -> list[tuple[Environment, UserTask]]:
    """``n`` held-out (environment, task) pairs for measuring an agent: environments drawn
    for held-out users, tasks in held-out wordings about held-out people."""
    people = world.people("heldout")
    if not people:
        raise AssayError("the world has no held-out people to act for")
    rng = random.Random(f"heldout-tasks-{seed}")
    out: list[tuple[Environment, UserTask]] = []
    for k in range((n + per_user - 1) // per_user):
        env = Environment.build(world, rng.choice(people), seed=10_000 + seed * 100_003 + k)
        out += [(env, t) for t in user_tasks(world, "test", env, n=per_user,
                                             seed=10_000 + seed * 100_003 + k)]
    return out[:n]


def run_tasks(policy_of: Callable[[UserTask], Policy],
              pairs: Sequence[tuple[Environment, UserTask]],
              max_steps: int = 6) -> list[tuple[UserTask, Episode]]:
    """Each task run by ``policy_of(task)`` in a fresh copy of its environment (all in
    lockstep, batched when every task gets the same batching policy)."""
    policies = [policy_of(task) for _, task in pairs]
    jobs = [Job(Environment(env.user, env.snapshot()), task.prompt) for env, task in pairs]
    same = all(p is policies[0] for p in policies)
    episodes = run_episodes(policies[0] if same and policies else policies, jobs, max_steps)
    return [(task, ep) for (_, task), ep in zip(pairs, episodes)]
