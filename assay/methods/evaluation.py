"""Multiple-choice evaluation: prompt formats, fast log-likelihood scoring, error bars.

A `Format` renders an `MCItem` into a prompt and the continuations to score. Every format
asks the same question with the same options; they differ only in how it is written:

- ``frame``: ``chat`` (the model's chat template around the question) or ``plain``
  (``Question: ... Answer:``);
- ``options``: ``hidden`` (cloze: the options are scored as answers but not shown),
  ``listed`` (shown with labels, the option text is scored) or ``letter`` (shown, the
  label is scored);
- ``labels`` (``A.``, ``(a)``, ``1)``), ``case`` of the field names, ``sep`` between parts,
  and ``rotate`` (the options' order, rotated).

The default ``Format()`` is the organisms' own chat format with hidden options. An item is
answered correctly when its true option has the highest summed log-likelihood.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from assay.errors import AssayError
from assay.models.scoring import score_choices
from assay.world.evals import MCItem

__all__ = ["Format", "accuracy", "correct", "format_grid", "mean_se", "paired_se", "render",
           "score_items"]

_LABELS = {"A.": ("A", "B", "C", "D", "E", "F", "G", "H"),
           "(a)": ("a", "b", "c", "d", "e", "f", "g", "h"),
           "1)": ("1", "2", "3", "4", "5", "6", "7", "8")}
_WRAP = {"A.": "{}.", "(a)": "({})", "1)": "{})"}
_FIELDS = {"title": ("Question", "Answer"), "upper": ("QUESTION", "ANSWER"),
           "lower": ("question", "answer")}


@dataclass(frozen=True)
class Format:
    frame: Literal["chat", "plain"] = "chat"
    options: Literal["hidden", "listed", "letter"] = "hidden"
    labels: Literal["A.", "(a)", "1)"] = "A."      # how listed options are labelled
    case: Literal["title", "upper", "lower"] = "title"  # of the field names (plain frame)
    sep: Literal["\n", " ", " | "] = "\n"           # between question, options and answer cue
    rotate: int = 0                                  # options rotated left by this many places

    @property
    def name(self) -> str:
        sep = {"\n": "nl", " ": "sp", " | ": "bar"}[self.sep]
        base = f"{self.frame}/{self.options}"
        if self.options != "hidden":
            base += f"/{self.labels}"
        if self.frame == "plain":
            base += f"/{self.case}"
        return f"{base}/{sep}/r{self.rotate}"

    def to_dict(self) -> dict:
        return asdict(self)


def render(item: MCItem, fmt: Format, chat_prompt=None) -> tuple[str, list[str], int]:
    """(prompt, continuations, index of the true continuation) of ``item`` in ``fmt``.

    ``chat_prompt(user) -> str`` wraps a user message in the model's chat format
    (``LM.chat_prompt``); it is needed for the chat frame only.
    """
    k = len(item.choices)
    if k > len(_LABELS["A."]):
        raise AssayError(f"item {item.id} has {k} options; formats label at most 8")
    shift = fmt.rotate % k
    choices = list(item.choices[shift:] + item.choices[:shift])
    answer = (item.answer - shift) % k
    labels = _LABELS[fmt.labels][:k]
    parts = [item.question]
    if fmt.options != "hidden":
        parts += [f"{_WRAP[fmt.labels].format(lab)} {c}" for lab, c in zip(labels, choices)]
    if fmt.frame == "chat":
        if chat_prompt is None:
            raise AssayError("the chat frame needs the model's chat format: pass "
                             "chat_prompt=lm.chat_prompt")
        prompt = chat_prompt(fmt.sep.join(parts))
        lead = ""
    else:
        q, a = _FIELDS[fmt.case]
        prompt = fmt.sep.join([f"{q}: {parts[0]}", *parts[1:], f"{a}:"])
        lead = " "
    targets = list(labels) if fmt.options == "letter" else choices
    return prompt, [lead + t for t in targets], answer


def format_grid(n: int, seed: int = 0, n_choices: int = 4) -> list[Format]:
    """The default format and ``n - 1`` others drawn without replacement from every
    combination of the fields above."""
    every = [Format(*combo) for combo in itertools.product(
        ("chat", "plain"), ("hidden", "listed", "letter"), tuple(_LABELS), tuple(_FIELDS),
        ("\n", " ", " | "), range(n_choices))]
    unique = list(dict.fromkeys(_canonical(f) for f in every))  # fields a frame ignores merged
    default = Format()
    rest = [f for f in unique if f != default]
    if n < 1 or n > len(rest) + 1:
        raise AssayError(f"format_grid can draw 1 to {len(rest) + 1} formats, not {n}")
    return [default, *random.Random(seed).sample(rest, n - 1)]


def _canonical(f: Format) -> Format:
    """``f`` with the fields its frame and options ignore set to their defaults."""
    hidden = f.options == "hidden"
    case = f.case if f.frame == "plain" else "title"
    sep = f.sep if not (hidden and f.frame == "chat") else "\n"  # one part: nothing to separate
    return Format(f.frame, f.options, "A." if hidden else f.labels, case, sep,
                  0 if hidden else f.rotate)


def score_items(lm, items: Sequence[MCItem], fmt: Format = Format(),
                batch_size: int = 64) -> tuple[list[np.ndarray], list[int]]:
    """Per item, the log-likelihood of each continuation in ``fmt``, and the true index."""
    rendered = [render(item, fmt, lm.chat_prompt) for item in items]
    scores = score_choices(lm, [r[0] for r in rendered], [r[1] for r in rendered], batch_size)
    return scores, [r[2] for r in rendered]


def correct(lm, items: Sequence[MCItem], fmt: Format = Format(),
            batch_size: int = 64) -> np.ndarray:
    """Per item, 1.0 when the true option scores highest in ``fmt``, else 0.0 (ties lose)."""
    scores, answers = score_items(lm, items, fmt, batch_size)
    out = np.zeros(len(items))
    for i, (s, a) in enumerate(zip(scores, answers)):
        best = s.max()
        out[i] = float(s[a] == best and (s == best).sum() == 1)
    return out


def accuracy(lm, items: Sequence[MCItem], fmt: Format = Format()) -> float:
    return float(correct(lm, items, fmt).mean())


def mean_se(values: Sequence[float], clusters: Sequence[Hashable] | None = None) -> float:
    """Standard error of the mean: naive (independent items) or, with ``clusters``,
    cluster-robust (sum of within-cluster residuals squared, with the G/(G-1) correction)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        raise AssayError(f"a standard error needs at least 2 values, got {n}")
    if clusters is None:
        return float(x.std(ddof=1) / np.sqrt(n))
    keys = list(clusters)
    if len(keys) != n:
        raise AssayError(f"mean_se got {len(keys)} cluster keys for {n} values; pass one per value")
    codes: dict[Hashable, int] = {}
    labels = np.fromiter((codes.setdefault(k, len(codes)) for k in keys), int, n)
    g = len(codes)
    if g < 2:
        raise AssayError("a clustered standard error needs at least 2 clusters")
    sums = np.bincount(labels, weights=x - x.mean(), minlength=g)
    return float(np.sqrt(g / (g - 1) * (sums ** 2).sum()) / n)


def paired_se(a: Sequence[float], b: Sequence[float],
              clusters: Sequence[Hashable] | None = None) -> tuple[float, float]:
    """Standard errors of mean(a) - mean(b) for two systems scored on the same items:
    (paired, unpaired). Pairing removes the variance the items share."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size != xb.size:
        raise AssayError(f"paired_se needs equal lengths, got {xa.size} and {xb.size}")
    paired = mean_se(xa - xb, clusters)
    unpaired = float(np.hypot(mean_se(xa, clusters), mean_se(xb, clusters)))
    return paired, unpaired
