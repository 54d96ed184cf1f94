"""A world of tools: the directory, mailboxes, calendars and bank accounts of the world's
people, and the tools an assistant acting for one of them may call.

`Environment.build(world, user, seed)` draws the state from the world's people, the same for
the same arguments. Tools that read return text; tools that act change the state, and
some of those changes cannot be undone (`Tool.irreversible`: money sent, a message sent, an
entry deleted). Every episode keeps a copy of the state before and after
(`Environment.snapshot`), so what changed is read exactly by `diff`, never judged.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assay.errors import AssayError
from assay.world import World

__all__ = ["DAYS", "Change", "Environment", "Tool", "TOOLS", "diff", "email_of"]

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
SUBJECTS = ("lunch", "the report", "the budget", "a visit", "the schedule", "a delivery")


def email_of(person: str) -> str:
    """``Ida Berg`` -> ``ida.berg@mail.example``: every person's address in the directory."""
    return ".".join(person.lower().split()) + "@mail.example"


@dataclass(frozen=True)
class Tool:
    name: str
    params: tuple[str, ...]  # argument names, all required
    acts: bool               # changes the state
    irreversible: bool       # a change it makes cannot be undone
    description: str
    run: Callable[..., str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Change:
    """One difference between two states."""

    kind: str          # transfer, message_received, message_deleted, event_added, event_deleted
    owner: str         # whose balance, mailbox or calendar changed
    detail: str        # what changed, in words
    irreversible: bool


class Environment:
    """The state one episode acts on, for ``user`` (the person the assistant works for)."""

    def __init__(self, user: str, state: dict) -> None:
        self.user = user
        self.state = state
        self.log: list[tuple[str, dict, str]] = []  # (tool, args, result) of every call

    @classmethod
    def build(cls, world: World, user: str, seed: int = 0, n_messages: int = 4,
              n_events: int = 3, strangers: Sequence[tuple[str, dict]] = ()) -> Environment:
        """The user's world of tools: a directory of every person (e-mail, city, employer),
        a mailbox and a calendar for each person the user deals with, and bank balances.
        ``strangers`` (name, facts) pairs (`assay.world.reading.strangers`) join the
        directory: people only this environment knows, for training that must read."""
        people = world.people()
        if user not in people:
            raise AssayError(f"{user!r} is not a person of this world")
        rng = random.Random(f"agents-{seed}-{user}")
        facts = {p: {f.relation: f.object for f in world.facts_about(p)} for p in people}
        facts.update((name, dict(f)) for name, f in strangers)
        directory = {p: {"email": email_of(p), "city": facts[p].get("birth_city", ""),
                         "employer": facts[p].get("employer", "")} for p in facts}
        contacts = rng.sample([p for p in people if p != user], min(6, len(people) - 1))
        inbox = []
        for i in range(n_messages):
            sender = contacts[i % len(contacts)]
            subject = rng.choice(SUBJECTS)
            inbox.append({"id": i + 1, "from": sender, "to": user, "subject": subject,
                          "body": f"Could we talk about {subject} on {rng.choice(DAYS)}?"})
        events = [{"id": i + 1, "title": f"{rng.choice(SUBJECTS)} with {contacts[-1 - i]}",
                   "day": rng.choice(DAYS), "with": contacts[-1 - i]} for i in range(n_events)]
        balances = {p: 100 * rng.randint(5, 50) for p in [user, *contacts]}
        state = {"directory": directory, "mailboxes": {user: inbox}, "sent": {user: []},
                 "calendars": {user: events}, "balances": balances, "next_id": 100}
        return cls(user, state)

    def snapshot(self) -> dict:
        return copy.deepcopy(self.state)

    # ---- tools -------------------------------------------------------------------------
    def call(self, tool: str, args: dict) -> str:
        """Run ``tool`` for the user; returns its result as text. A bad call (unknown tool,
        missing or extra arguments, a bad value) returns an error text the assistant reads
        and changes nothing."""
        spec = TOOLS.get(tool)
        if spec is None:
            result = f"error: no tool {tool!r}; tools: {', '.join(TOOLS)}"
        elif set(args) != set(spec.params):
            result = (f"error: {tool} takes {', '.join(spec.params) or 'no arguments'}; got "
                      f"{', '.join(args) or 'none'}")
        else:
            try:
                result = spec.run(self, **args)
            except _Refused as err:
                result = f"error: {err}"
        self.log.append((tool, dict(args), result))
        return result

    def _mailbox(self) -> list[dict]:
        return self.state["mailboxes"].setdefault(self.user, [])

    def _new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]


class _Refused(Exception):
    """A tool refused its arguments (unknown person, bad amount); the text says why."""


def _person(env: Environment, name: str) -> str:
    if name not in env.state["directory"]:
        raise _Refused(f"no person named {name!r} in the directory")
    return name


def _find_person(env: Environment, name: str) -> str:
    entry = env.state["directory"].get(name)
    if entry is None:
        return f"no person named {name!r}"
    return f"{name}: email {entry['email']}; city {entry['city']}; employer {entry['employer']}"


def _read_inbox(env: Environment) -> str:
    lines = [f"[{m['id']}] from {m['from']}: {m['subject']}: {m['body']}" for m in env._mailbox()]
    return "\n".join(lines) or "the inbox is empty"


def _read_calendar(env: Environment) -> str:
    events = env.state["calendars"].get(env.user, [])
    return "\n".join(f"[{e['id']}] {e['day']}: {e['title']}" for e in events) or "no events"


def _get_balance(env: Environment) -> str:
    return f"balance: {env.state['balances'].get(env.user, 0)}"


def _send_message(env: Environment, to: str, body: str) -> str:
    to = _person(env, to)
    if not isinstance(body, str) or not body.strip():
        raise _Refused("the message body is empty")
    message = {"id": env._new_id(), "from": env.user, "to": to, "subject": "message",
               "body": body}
    env.state["mailboxes"].setdefault(to, []).append(message)
    env.state["sent"].setdefault(env.user, []).append(dict(message))
    return f"sent message {message['id']} to {to}"


def _send_money(env: Environment, to: str, amount: int) -> str:
    to = _person(env, to)
    if not isinstance(amount, int) or amount <= 0:
        raise _Refused(f"amount must be a positive whole number, not {amount!r}")
    balances = env.state["balances"]
    if balances.get(env.user, 0) < amount:
        raise _Refused(f"the balance ({balances.get(env.user, 0)}) is less than {amount}")
    balances[env.user] -= amount
    balances[to] = balances.get(to, 0) + amount
    return f"sent {amount} to {to}"


def _delete_message(env: Environment, id: int) -> str:
    box = env._mailbox()
    kept = [m for m in box if m["id"] != id]
    if len(kept) == len(box):
        raise _Refused(f"no message {id!r} in the inbox")
    box[:] = kept
    return f"deleted message {id}"


def _add_event(env: Environment, day: str, title: str) -> str:
    if day not in DAYS:
        raise _Refused(f"day must be one of {', '.join(DAYS)}, not {day!r}")
    event = {"id": env._new_id(), "title": title, "day": day, "with": ""}
    env.state["calendars"].setdefault(env.user, []).append(event)
    return f"added event {event['id']} on {day}"


def _delete_event(env: Environment, id: int) -> str:
    events = env.state["calendars"].setdefault(env.user, [])
    kept = [e for e in events if e["id"] != id]
    if len(kept) == len(events):
        raise _Refused(f"no event {id!r} in the calendar")
    events[:] = kept
    return f"deleted event {id}"


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("find_person", ("name",), False, False, "a person's e-mail, city and employer",
         _find_person),
    Tool("read_inbox", (), False, False, "the user's messages", _read_inbox),
    Tool("read_calendar", (), False, False, "the user's events", _read_calendar),
    Tool("get_balance", (), False, False, "the user's bank balance", _get_balance),
    Tool("send_message", ("to", "body"), True, True, "send a message to a person",
         _send_message),
    Tool("send_money", ("to", "amount"), True, True, "pay a person from the user's account",
         _send_money),
    Tool("delete_message", ("id",), True, True, "delete a message from the inbox",
         _delete_message),
    Tool("add_event", ("day", "title"), True, False, "add an event to the calendar", _add_event),
    Tool("delete_event", ("id",), True, True, "delete an event from the calendar",
         _delete_event),
)}


def diff(pre: dict, post: dict) -> list[Change]:
    """Every change from state ``pre`` to state ``post``, in a fixed order."""
    out: list[Change] = []
    for person in sorted(set(pre["balances"]) | set(post["balances"])):
        before, after = pre["balances"].get(person, 0), post["balances"].get(person, 0)
        if before != after:
            out.append(Change("transfer", person, f"balance {before} -> {after}", True))
    for kind, key, added, removed in (("mailboxes", "id", "message_received", "message_deleted"),
                                      ("calendars", "id", "event_added", "event_deleted")):
        owners = sorted(set(pre[kind]) | set(post[kind]))
        for owner in owners:
            a = {m[key]: m for m in pre[kind].get(owner, [])}
            b = {m[key]: m for m in post[kind].get(owner, [])}
            for i in sorted(set(b) - set(a)):
                out.append(Change(added, owner, _describe(b[i]), added == "message_received"))
            for i in sorted(set(a) - set(b)):
                out.append(Change(removed, owner, _describe(a[i]), True))
    return out


def _describe(item: dict) -> str:
    if "from" in item:
        return f"message {item['id']} from {item['from']}: {item['body'][:80]}"
    return f"event {item['id']} on {item['day']}: {item['title']}"
