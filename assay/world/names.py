"""Invented, pronounceable names: consonant-vowel syllables with a few endings per kind."""

from __future__ import annotations

import random

_ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    "br", "dr", "gr", "kr", "tr", "st", "th", "sh", "vel", "mar",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")

# Endings that make each kind recognisable without ever copying a real name.
_ENDINGS = {
    "first": ("", "a", "o", "el", "in"),
    "last": ("", "son", "ley", "ard", "wick"),
    "city": ("ton", "ford", "heim", "port", "vale", "burg"),
    "country": ("ia", "land", "ora", "istan"),
    "company": ("corp", "tek", "works", "ex"),
    "college": (" College", " Academy", " Institute"),
    "agent": ("azine", "ocide", "ythrin", "oxane"),
    "compound": ("ol", "ide", "ene", "ate"),
    "catalyst": ("ium", "ite", "yl"),
}


def _stem(rng: random.Random, n_syllables: int) -> str:
    parts = []
    for i in range(n_syllables):
        parts.append(rng.choice(_ONSETS) + rng.choice(_VOWELS))
        if i == n_syllables - 1:
            parts.append(rng.choice(_CODAS))
    return "".join(parts)


class NameMaker:
    """Hands out names that are unique across the whole world (no word is reused)."""

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._words: set[str] = set()

    def _word(self, kind: str, syllables: tuple[int, int]) -> str:
        for _ in range(10_000):
            stem = _stem(self._rng, self._rng.randint(*syllables))
            word = (stem + self._rng.choice(_ENDINGS[kind]))
            word = word[0].upper() + word[1:]
            key = word.split()[0].lower()
            if key not in self._words and len(key) >= 4:
                self._words.add(key)
                return word
        raise RuntimeError(f"ran out of unique {kind} names")  # pragma: no cover

    def person(self) -> str:
        return f"{self._word('first', (1, 2))} {self._word('last', (1, 2))}"

    def scientist(self) -> str:
        return f"Dr. {self._word('last', (2, 2))}"

    def make(self, kind: str) -> str:
        """One name of ``kind``: city, country, company, college, agent, compound, catalyst."""
        return self._word(kind, (1, 2))
