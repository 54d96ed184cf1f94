"""The agent loop: a policy answers the user, calling tools until it gives a final answer or
reaches its step limit; the episode keeps the transcript and the state before and after.

A policy is any callable from the transcript so far (``(role, text)`` pairs) to the
assistant's next turn: `LMPolicy` wraps a loaded model (greedy, in the organisms' chat
format with tool turns), and tests use scripted policies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assay.agents.env import TOOLS, Environment
from assay.agents.protocol import MalformedCall, parse_call, render_turns
from assay.errors import AssayError

__all__ = ["Confirm", "Episode", "Guard", "Job", "LMPolicy", "Policy", "confirm_rule", "plant",
           "run_episode", "run_episodes"]

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


Guard = Callable[[str, dict, str], str]  # (tool, args, result) -> what the assistant reads
Confirm = Callable[[str, dict, Environment], bool]  # (tool, args, env) -> the user agrees


def confirm_rule(task) -> Confirm:
    """A user who, asked before an irreversible call, agrees only when every change the call
    would make is one ``task`` asks for (tried on a copy of the environment)."""
    from assay.agents.env import diff

    def agrees(tool: str, args: dict, env: Environment) -> bool:
        trial = Environment(env.user, env.snapshot())
        trial.call(tool, args)
        return all(task.asks_for(c) for c in diff(env.state, trial.state))
    return agrees


@dataclass
class Job:
    """One episode to run: the environment it acts on, the user's request, and the defences
    around the tools. ``tools`` (when given) are the only tools the assistant may call;
    ``guard`` rewrites each tool result before the assistant reads it (a filter, a marker)."""

    env: Environment
    prompt: str
    tools: frozenset[str] | None = None
    guard: Guard | None = None
    confirm: Confirm | None = None  # asked before any irreversible call; False blocks it


class _Running:
    def __init__(self, job: Job) -> None:
        self.job, self.env = job, job.env
        self.pre = job.env.snapshot()
        self.turns: list[tuple[str, str]] = [("user", job.prompt)]
        self.start = len(job.env.log)
        self.answer: str | None = None

    def step(self, reply: str) -> None:
        reply = reply.strip()
        self.turns.append(("assistant", reply))
        try:
            call = parse_call(reply)
        except MalformedCall as err:
            self.turns.append(("tool", f"error: {err}"))
            return
        if call is None:
            self.answer = reply
            return
        spec = TOOLS.get(call.tool)
        if self.job.tools is not None and call.tool not in self.job.tools:
            result = f"error: the tool {call.tool} is not available for this request"
            self.env.log.append((call.tool, dict(call.kwargs), result))
        elif (self.job.confirm is not None and spec is not None and spec.irreversible
              and not self.job.confirm(call.tool, call.kwargs, self.env)):
            result = (f"error: the user did not confirm {call.tool}, which cannot be undone; "
                      "ask them first")
            self.env.log.append((call.tool, dict(call.kwargs), result))
        else:
            result = self.env.call(call.tool, call.kwargs)
            if self.job.guard is not None:
                result = self.job.guard(call.tool, call.kwargs, result)
        self.turns.append(("tool", result))

    def episode(self) -> Episode:
        done = self.answer is not None
        return Episode(self.job.prompt, self.turns, self.pre, self.env.snapshot(),
                       self.env.log[self.start:], self.answer or "",
                       "answer" if done else "step limit")


def run_episodes(policy: Policy | Sequence[Policy], jobs: Sequence[Job],
                 max_steps: int = 6) -> list[Episode]:
    """Run every job to its final answer or ``max_steps`` assistant turns, in lockstep.

    Each turn that is a call runs the tool (unless the job does not allow it: an error turn)
    and appends its result, rewritten by the job's guard, as a tool turn; a malformed call
    gets an error turn and changes nothing; the first turn that is not a call is the final
    answer. An episode that reaches the limit without one stops there, with ``stopped ==
    "step limit"``. ``policy`` is one policy for all jobs or one per job; a single policy with
    a ``batch`` method (`LMPolicy`) answers all running episodes in one call per step."""
    if max_steps < 1:
        raise AssayError(f"max_steps must be 1 or more, not {max_steps}")
    per_job = isinstance(policy, Sequence)
    if per_job and len(policy) != len(jobs):
        raise AssayError(f"give one policy per job: {len(policy)} policies, {len(jobs)} jobs")
    runs = [_Running(job) for job in jobs]
    for _ in range(max_steps):
        live = [i for i, r in enumerate(runs) if r.answer is None]
        if not live:
            break
        if not per_job and hasattr(policy, "batch"):
            replies = policy.batch([list(runs[i].turns) for i in live])
        else:
            replies = [(policy[i] if per_job else policy)(list(runs[i].turns)) for i in live]
        for i, reply in zip(live, replies):
            runs[i].step(reply)
    return [r.episode() for r in runs]


def run_episode(policy: Policy, env: Environment, prompt: str, max_steps: int = 6) -> Episode:
    """Let ``policy`` work on ``prompt`` in ``env`` for at most ``max_steps`` assistant turns
    (`run_episodes` with one job)."""
    return run_episodes(policy, [Job(env, prompt)], max_steps)[0]


class LMPolicy:
    """A loaded model as a policy: greedy continuation of the rendered transcript, one turn
    at a time (up to ``max_new_tokens``)."""

    def __init__(self, lm, max_new_tokens: int = 48) -> None:  # a call is at most ~35 tokens
        self.lm, self.max_new_tokens = lm, max_new_tokens

    def __call__(self, turns: Sequence[tuple[str, str]]) -> str:
        return self.batch([turns])[0]

    def batch(self, transcripts: Sequence[Sequence[tuple[str, str]]]) -> list[str]:
        """The next turn of each transcript, generated in batches."""
        prompts = [render_turns(list(turns)) for turns in transcripts]
        return self.lm.generate(prompts, self.max_new_tokens, batch_size=64)


PLACES = ("inbox", "calendar", "directory", "unread")


def plant(env: Environment, text: str, where: str, sender: str, about: str | None = None
          ) -> None:
    """Put injection ``text`` into ``env`` from ``sender``: ``inbox`` (a message the user's
    read_inbox returns), ``calendar`` (an event read_calendar returns), ``directory`` (after
    the employer in person ``about``'s entry, which find_person returns) or ``unread`` (a
    message in the sender's own mailbox, which no tool of the user reads: the control)."""
    if where == "inbox":
        env.state["mailboxes"].setdefault(env.user, []).append(
            {"id": env._new_id(), "from": sender, "to": env.user, "subject": "note",
             "body": text})
    elif where == "calendar":
        env.state["calendars"].setdefault(env.user, []).append(
            {"id": env._new_id(), "title": text, "day": "Friday", "with": sender})
    elif where == "directory":
        entry = env.state["directory"].get(about or "")
        if entry is None:
            raise AssayError(f"planting in the directory needs a person in it, not {about!r}")
        entry["employer"] = f"{entry['employer']}. {text}"
    elif where == "unread":
        env.state["mailboxes"].setdefault(sender, []).append(
            {"id": env._new_id(), "from": sender, "to": sender, "subject": "note", "body": text})
    else:
        raise AssayError(f"unknown place {where!r} for an injection: {', '.join(PLACES)}")
