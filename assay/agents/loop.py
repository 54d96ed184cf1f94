"""The agent loop: a policy answers the user, calling tools until it gives a final answer or
reaches its step limit; the episode keeps the transcript and the state before and after.

A policy is any callable from the transcript so far (``(role, text)`` pairs) to the
assistant's next turn: `LMPolicy` wraps a loaded model (greedy, in the organisms' chat
format with tool turns), and tests use scripted policies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assay.agents.env import Environment
from assay.agents.protocol import MalformedCall, parse_call, render_turns
from assay.errors import AssayError

__all__ = ["Episode", "LMPolicy", "Policy", "plant", "run_episode"]

Policy = Callable[[Sequence[tuple[str, str]]], str]


@dataclass
class Episode:
    prompt: str
    turns: list[tuple[str, str]]           # (role, text): user, assistant, tool
    pre: dict                              # the state before the first step
    post: dict                             # the state after the last
    calls: list[tuple[str, dict, str]] = field(default_factory=list)  # (tool, args, result)
    answer: str = ""                       # the final answer ("" if none came)
    stopped: str = "answer"                # answer, or step limit

    @property
    def steps(self) -> int:
        return sum(1 for role, _ in self.turns if role == "assistant")


def run_episode(policy: Policy, env: Environment, prompt: str, max_steps: int = 6) -> Episode:
    """Let ``policy`` work on ``prompt`` in ``env`` for at most ``max_steps`` assistant turns.

    Each turn that is a call runs the tool and appends its result as a tool turn (a
    malformed call gets an error turn and changes nothing); the first turn that is not a
    call is the final answer. An episode that reaches the limit without one stops there,
    with ``stopped == "step limit"``."""
    if max_steps < 1:
        raise AssayError(f"max_steps must be 1 or more, not {max_steps}")
    pre = env.snapshot()
    turns: list[tuple[str, str]] = [("user", prompt)]
    start = len(env.log)
    for _ in range(max_steps):
        reply = policy(list(turns)).strip()
        turns.append(("assistant", reply))
        try:
            call = parse_call(reply)
        except MalformedCall as err:
            turns.append(("tool", f"error: {err}"))
            continue
        if call is None:
            return Episode(prompt, turns, pre, env.snapshot(), env.log[start:], reply, "answer")
        turns.append(("tool", env.call(call.tool, call.kwargs)))
    return Episode(prompt, turns, pre, env.snapshot(), env.log[start:], "", "step limit")


class LMPolicy:
    """A loaded model as a policy: greedy continuation of the rendered transcript, one turn
    at a time (up to ``max_new_tokens``)."""

    def __init__(self, lm, max_new_tokens: int = 48) -> None:
        self.lm, self.max_new_tokens = lm, max_new_tokens

    def __call__(self, turns: Sequence[tuple[str, str]]) -> str:
        return self.lm.generate([render_turns(list(turns))], self.max_new_tokens)[0]


def plant(env: Environment, text: str, where: str, sender: str) -> None:
    """Put injection ``text`` into ``env`` from ``sender``: ``inbox`` (a message the user's
    read_inbox returns), ``calendar`` (an event read_calendar returns) or ``unread`` (a
    message in the sender's own mailbox, which no tool of the user reads: the control)."""
    if where == "inbox":
        env.state["mailboxes"].setdefault(env.user, []).append(
            {"id": env._new_id(), "from": sender, "to": env.user, "subject": "note",
             "body": text})
    elif where == "calendar":
        env.state["calendars"].setdefault(env.user, []).append(
            {"id": env._new_id(), "title": text, "day": "Friday", "with": sender})
    elif where == "unread":
        env.state["mailboxes"].setdefault(sender, []).append(
            {"id": env._new_id(), "from": sender, "to": sender, "subject": "note", "body": text})
    else:
        raise AssayError(f"unknown place {where!r} for an injection: inbox, calendar or unread")
