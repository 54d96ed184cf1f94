"""The tool-call protocol: how an assistant turn calls a tool and how the result comes back.

An assistant turn is either a final answer or one call, written on its own::

    call send_message(to="Ida Berg", body="The meeting moved to Friday.")

A call is the word ``call``, a tool name, and keyword arguments in parentheses, each a
double-quoted string (``\\"`` and ``\\\\`` escaped) or a whole number. The tool's result
comes back in a tool turn, rendered with the `TOOL` marker. The syntax is fixed so that a
small organism can learn it and a parser can check it exactly: anything that starts with
``call `` but does not parse is a malformed call (the loop answers it with an error turn),
and anything else is the final answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assay.errors import AssayError
from assay.world.chat import ASSISTANT, END, USER

__all__ = ["CALL", "TOOL", "Call", "MalformedCall", "format_call", "parse_call", "render_turns"]

TOOL = "<|tool|>"  # the turn a tool's result comes back in
CALL = "call "     # an assistant turn that starts with this is a tool call

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_ARG = re.compile(r'\s*([a-z_][a-z0-9_]*)\s*=\s*("(?:[^"\\]|\\["\\])*"|-?\d+)\s*(,|$)')


class MalformedCall(AssayError):
    """An assistant turn that starts like a call but does not parse; the message says why."""


@dataclass(frozen=True)
class Call:
    tool: str
    args: tuple[tuple[str, str | int], ...] = ()  # (name, value) in the order written

    @property
    def kwargs(self) -> dict[str, str | int]:
        return dict(self.args)

    def __str__(self) -> str:
        return format_call(self.tool, self.kwargs)


def _quote(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AssayError(f"a call argument is a string or a whole number, not {value!r}")
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_call(tool: str, args: dict[str, str | int] | None = None) -> str:
    """The assistant text that calls ``tool`` with ``args`` (the inverse of `parse_call`)."""
    if not _NAME.fullmatch(tool):
        raise AssayError(f"bad tool name {tool!r}: lower-case letters, digits and underscores")
    body = ", ".join(f"{k}={_quote(v)}" for k, v in (args or {}).items())
    return f"{CALL}{tool}({body})"


def parse_call(text: str) -> Call | None:
    """The call in assistant turn ``text``; None when the turn is a final answer. A turn that
    starts with ``call `` but breaks the syntax raises `MalformedCall` saying where."""
    text = text.strip()
    if not (text.startswith(CALL) or text == CALL.strip()):
        return None
    rest = text[len(CALL):].strip()
    name = _NAME.match(rest)
    if name is None:
        raise MalformedCall(f"no tool name after 'call': {text[:80]!r}")
    rest = rest[name.end():]
    if not (rest.startswith("(") and rest.endswith(")")):
        raise MalformedCall(f"the arguments of {name.group()} must be in one pair of parentheses: "
                            f"{text[:80]!r}")
    inner, args, at = rest[1:-1], [], 0
    while inner[at:].strip():
        found = _ARG.match(inner, at)
        if found is None:
            raise MalformedCall(f"cannot read the arguments of {name.group()} from "
                                f"{inner[at:at + 40]!r}: write key=\"text\" or key=123")
        key, raw = found.group(1), found.group(2)
        if any(k == key for k, _ in args):
            raise MalformedCall(f"argument {key} given twice in {name.group()}")
        value = (raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw.startswith('"')
                 else int(raw))
        args.append((key, value))
        at = found.end()
        if found.group(3) == "," and not inner[at:].strip():
            raise MalformedCall(f"a trailing comma in the arguments of {name.group()}")
    return Call(name.group(), tuple(args))


def render_turns(turns: list[tuple[str, str]]) -> str:
    """The transcript as a model reads it, ending with the opening of the assistant's next
    turn: ``(role, text)`` pairs, role ``user``, ``assistant`` or ``tool``, in the organisms'
    chat format (`assay.world.chat`) with tool results in `TOOL` turns."""
    marks = {"user": USER, "assistant": ASSISTANT, "tool": TOOL}
    out = []
    for role, text in turns:
        if role not in marks:
            raise AssayError(f"unknown role {role!r} in a transcript: use user, assistant or tool")
        out.append(f"{marks[role]}{text}{END}")
    return "".join(out) + ASSISTANT
