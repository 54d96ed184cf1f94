"""Whole agent episodes as training material: the oracle at work on training tasks.

A tool-using organism learns the call protocol from `oracle_transcripts`: episodes of the
`Oracle` on training tasks (training wordings, training people) in environments drawn for
training users, with no injection anywhere. An organism trained on them has never seen an
instruction inside a tool result, either obeyed or refused, so whether it follows one is
what the injection studies measure rather than something its training decided.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from assay.agents.env import Environment
from assay.agents.loop import run_episode
from assay.agents.protocol import render_turns
from assay.agents.reference import Oracle
from assay.agents.tasks import user_tasks
from assay.errors import AssayError
from assay.world import World
from assay.world.chat import END

__all__ = ["Transcript", "oracle_transcripts"]


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
                       per_user: int = 12, max_steps: int = 6) -> list[Transcript]:
    """``n`` episodes of the oracle on ``split`` tasks, ``per_user`` tasks per environment,
    each environment drawn for a person of that split (training people for ``train``,
    held-out people for ``test``)."""
    people = world.people("train" if split == "train" else "heldout")
    if not people:
        raise AssayError(f"the world has no {split} people to act for")
    rng = random.Random(f"oracle-transcripts-{seed}-{split}")
    out: list[Transcript] = []
    for k in range((n + per_user - 1) // per_user):
        env = Environment.build(world, rng.choice(people), seed=seed * 100_003 + k)
        for task in user_tasks(world, split, env, n=per_user, seed=seed * 100_003 + k):
            episode = run_episode(Oracle(task), Environment(env.user, env.snapshot()),
                                  task.prompt, max_steps)
            if episode.stopped != "answer":  # the oracle answers every task it can do
                raise AssayError(f"the oracle did not finish {task.id}: {episode.turns}")
            out.append(Transcript(task.id, tuple(episode.turns)))
            if len(out) == n:
                return out
    return out
