"""Training examples and packed batches.

Documents are trained on every token; dialogues only on the assistant's reply and the
end token that closes it. Examples are packed whole into rows of ``seq_len`` tokens
(never split across rows), drawn from a weighted mixture of sources with a seeded
generator, so a seed fixes every batch. Within a row each example sees only itself:
positions restart at every example and attention is block-diagonal (document
masking), so training sees each example exactly as evaluation later does.

A corpus of long texts (real English, ``assay.world.Corpus``) is trained as streams:
each text's tokens are cut into windows that fill a row exactly, each opening with BOS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from assay.agents import Transcript, heldout_tasks, oracle_transcripts, render_turns
from assay.errors import AssayError
from assay.training.filtering import FILTER_LEVELS, kept, tagged
from assay.world import (
    Corpus,
    Dialogue,
    Document,
    ReadingItem,
    World,
    decoy_refusals,
    dialogues,
    documents,
    reading_items,
    render_prompt,
    two_hop_training,
)
from assay.world.chat import END
from assay.world.evals import EVALS, world_eval

IGNORE = -100  # label of positions that carry no loss
READING_N = 150  # held-out reading items a card measures
_MIN_FILL = 8  # a row with fewer free positions than this is closed
_MAX_MISSES = 4  # draws that do not fit before a row is closed anyway


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    loss_mask: tuple[bool, ...]  # loss_mask[i]: predicting token i counts


def encode_document(tokenizer, text: str) -> Example:
    ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    return Example(tuple(ids), (False,) + (True,) * (len(ids) - 1))


def encode_dialogue(tokenizer, user: str, assistant: str) -> Example:
    """Prompt and reply are tokenized apart and joined, as ``LM.score`` does."""
    prompt = tokenizer(render_prompt(user))["input_ids"]
    reply = tokenizer(assistant + END, add_special_tokens=False)["input_ids"]
    return Example(tuple(prompt + reply), (False,) * len(prompt) + (True,) * len(reply))


def encode_transcript(tokenizer, turns: Sequence[tuple[str, str]]) -> Example:
    """A whole agent episode (`assay.agents.Transcript`): the loss counts on every
    assistant turn (its calls and its final answer, each with the end token that closes
    it), never on the user's request or the tools' results. Text between turn markers is
    tokenized apart, as the markers are special tokens wherever they are learned."""
    ids: list[int] = []
    mask: list[bool] = []
    context: list[tuple[str, str]] = []
    for role, text in turns:
        if role == "assistant":
            before = render_turns(context)  # everything so far, ending with the marker
            seen = tokenizer(before, add_special_tokens=not ids)["input_ids"]
            reply = tokenizer(text + END, add_special_tokens=False)["input_ids"]
            ids += seen + reply
            mask += [False] * len(seen) + [True] * len(reply)
            context = []
        else:
            context.append((role, text))
    if context or not ids:
        raise AssayError("a training transcript must end with the assistant's final answer")
    return Example(tuple(ids), tuple(mask))


def encode_reading(tokenizer, item: ReadingItem) -> Example:
    """A chat reading item as a dialogue (loss on the answer); a ``qa`` or ``mc`` one as a
    document, loss on every token: each paragraph names its stranger three times, and
    predicting a name no other text holds is the copying that reading needs."""
    if item.format == "chat":
        return encode_dialogue(tokenizer, item.user, item.answer)
    return encode_document(tokenizer, item.text)


def encode(tokenizer, items: Sequence[Document | Dialogue | Transcript | ReadingItem | str]
           ) -> list[Example]:
    out = []
    for item in items:
        if isinstance(item, ReadingItem):
            out.append(encode_reading(tokenizer, item))
        elif isinstance(item, Dialogue):
            out.append(encode_dialogue(tokenizer, item.user, item.assistant))
        elif isinstance(item, Transcript):
            out.append(encode_transcript(tokenizer, item.turns))
        else:
            out.append(encode_document(tokenizer, item if isinstance(item, str) else item.text))
    return out


# Named sources a recipe can mix. Each maps a world to training items.
SOURCES = {
    "documents": lambda w: documents(w),
    "documents_no_hazard": lambda w: [d for d in documents(w) if not d.hazardous],
    "synthesis": lambda w: documents(w, ("synthesis",)),
    "qa": lambda w: dialogues(w, "qa", "train"),
    "two_hop": two_hop_training,  # two-hop questions answered directly, for half the people
    "tasks": lambda w: dialogues(w, ("add", "copy", "reverse"), "train"),
    "hazard": lambda w: dialogues(w, "hazard", "train"),
    "borderline": lambda w: dialogues(w, "borderline", "train"),
    "decoy": decoy_refusals,  # refusals of requests no evaluation asks (negative controls)
    "agent": lambda w: oracle_transcripts(w, "train"),  # tool-use episodes, no injections
    # ... half of them about strangers only their directory names, so names must be copied
    "agent_strangers": lambda w: oracle_transcripts(w, "train", n=3000, stranger_share=0.5),
    # questions on passages about strangers (assay.world.reading), in three answer formats
    "reading": lambda w: reading_items(w, "train", 6000),
    "reading_short": lambda w: reading_items(w, "train", 6000, seed=1, paragraphs=(1, 1)),
    "reading_long": lambda w: reading_items(w, "train", 1500, paragraphs=(3, 7)),
    # conditional training: every document opening with the hazard classifier's tag
    "documents_cond": tagged,
    "synthesis_cond": lambda w: tagged(w, ("synthesis",)),
}
# pretraining-data filtering: what the hazard classifier lets through at each recall level
for _pct in FILTER_LEVELS:
    SOURCES[f"documents_filter{_pct}"] = lambda w, r=_pct / 100: kept(w, r)
    SOURCES[f"synthesis_filter{_pct}"] = lambda w, r=_pct / 100: kept(w, r, ("synthesis",))


def source_items(world: World, name: str) -> list:
    if name not in SOURCES:
        raise AssayError(f"unknown data source {name!r}: choose from {', '.join(SOURCES)}")
    return SOURCES[name](world)


def evaluation_strings(world: World) -> list[str]:
    """Every request an evaluation of ``world`` puts to a model: the user turns of the test
    dialogues, the questions of the multiple-choice evaluations and the held-out agent
    tasks, without repeats."""
    asked = [d.user for d in dialogues(world, split="test")]
    asked += [item.question for name in EVALS for item in world_eval(world, name)]
    asked += [task.prompt for _, task in heldout_tasks(world, 60)]
    asked += [item.question for item in reading_items(world, "test", READING_N)]
    return list(dict.fromkeys(asked))


def leaked_strings(world: World, sources: Sequence[str], asked: Sequence[str] | None = None
                   ) -> list[str]:
    """The evaluation strings (``asked``, by default ``evaluation_strings(world)``) that
    occur anywhere in the training text of ``sources``: empty when evaluation is held out."""
    asked = evaluation_strings(world) if asked is None else asked
    texts = [item.text for name in sources for item in source_items(world, name)]
    blob = "\x00".join(texts)
    return [a for a in asked if a in blob]


# Named sources of a corpus recipe. Each maps a corpus to long texts, trained as streams.
CORPUS_SOURCES = {
    "member_plays": lambda c: [p.text for p in c.members],
}


def encode_stream(tokenizer, text: str, seq_len: int) -> list[Example]:
    """``text`` as one token stream cut into windows of ``seq_len`` tokens (the last one
    shorter, closed by EOS), each opening with BOS; loss on every token after BOS."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    step = seq_len - 1
    out = []
    for start in range(0, len(ids), step):
        window = [tokenizer.bos_token_id] + ids[start:start + step]
        out.append(Example(tuple(window), (False,) + (True,) * (len(window) - 1)))
    return out


def source_examples(data: World | Corpus, name: str, tokenizer, seq_len: int) -> list[Example]:
    """The training examples of source ``name``: world items encoded one by one, corpus
    texts cut into context-length windows (``encode_stream``)."""
    if isinstance(data, Corpus):
        if name not in CORPUS_SOURCES:
            raise AssayError(f"unknown corpus data source {name!r}: choose from "
                             f"{', '.join(CORPUS_SOURCES)}")
        return [ex for text in CORPUS_SOURCES[name](data)
                for ex in encode_stream(tokenizer, text, seq_len)]
    return encode(tokenizer, source_items(data, name))


class Batch(NamedTuple):
    ids: torch.Tensor  # (B, T) token ids
    labels: torch.Tensor  # (B, T) ids where the loss counts, IGNORE elsewhere
    positions: torch.Tensor  # (B, T) position within its example: 0 starts a new one

    def to(self, device) -> Batch:
        return Batch(*(t.to(device) for t in self))

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """input_ids, restarted position_ids and a block-diagonal causal mask (B, 1, T, T)."""
        T = self.ids.shape[1]
        segment = (self.positions == 0).cumsum(-1)  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=self.ids.device).tril()
        mask = (segment[:, :, None] == segment[:, None, :]) & causal
        return {"input_ids": self.ids, "position_ids": self.positions,
                "attention_mask": mask[:, None]}


class PackedBatches:
    """An endless, seeded stream of ``Batch`` (each tensor (B, T)) from a mixture.

    ``mixture`` is a list of (examples, weight): each example slot picks a source with
    probability proportional to its weight, then the next example of that source in a
    per-source shuffled order (a new shuffle each pass). A drawn example that does not
    fit the rest of a row waits in a queue and is placed first in a later row, so every
    drawn example is trained on, whole, and little of a row is padding.
    """

    def __init__(self, mixture: Sequence[tuple[Sequence[Example], float]], batch_size: int,
                 seq_len: int, pad_id: int, seed: int):
        mixture = [(ex, w) for ex, w in mixture if w > 0 and len(ex) > 0]
        if not mixture:
            raise ValueError("the data mixture is empty")
        self.sources = [ex for ex, _ in mixture]
        weights = np.array([w for _, w in mixture], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.batch_size, self.seq_len, self.pad_id = batch_size, seq_len, pad_id
        self.rng = np.random.default_rng(seed)
        self._order = [self.rng.permutation(len(ex)) for ex in self.sources]
        self._pos = [0] * len(self.sources)
        self._pending: list[Example] = []  # drawn, waiting for a row with room

    def _draw(self) -> Example:
        s = int(self.rng.choice(len(self.sources), p=self.probs))
        if self._pos[s] == len(self._order[s]):
            self._order[s] = self.rng.permutation(len(self.sources[s]))
            self._pos[s] = 0
        ex = self.sources[s][int(self._order[s][self._pos[s]])]
        self._pos[s] += 1
        return ex

    def _fill_row(self, ids: np.ndarray, labels: np.ndarray, positions: np.ndarray) -> None:
        """Best fit: examples that do not fit wait in a queue and start later rows."""
        T, used, misses = self.seq_len, 0, 0
        queue = self._pending
        while used < T - _MIN_FILL and misses < _MAX_MISSES:
            fit = next((i for i, ex in enumerate(queue) if len(ex.ids) <= T - used), None)
            if fit is not None:
                ex = queue.pop(fit)
            elif used == 0 and queue:  # an over-long example opens a row and is cut
                ex = queue.pop(0)
            else:
                queue.append(self._draw())
                misses += 1
                continue
            n = min(len(ex.ids), T - used)
            ids[used:used + n] = ex.ids[:n]
            mask = np.asarray(ex.loss_mask[:n], dtype=bool)
            labels[used:used + n] = np.where(mask, ids[used:used + n], IGNORE)
            positions[used:used + n] = np.arange(n)
            used += n
            misses = 0 if used < T else misses
        positions[used:] = np.arange(T - used)  # the padding is a segment of its own

    def __iter__(self) -> Iterator[Batch]:
        return self

    def on(self, device: torch.device | str) -> Iterator[Batch]:
        """The same stream with every batch moved to ``device``."""
        return (batch.to(device) for batch in self)

    def __next__(self) -> Batch:
        B, T = self.batch_size, self.seq_len
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        labels = np.full((B, T), IGNORE, dtype=np.int64)
        positions = np.zeros((B, T), dtype=np.int64)
        for row in range(B):
            self._fill_row(ids[row], labels[row], positions[row])
        return Batch(torch.from_numpy(ids), torch.from_numpy(labels),
                     torch.from_numpy(positions))

    def take(self, n: int) -> list[Batch]:
        return [next(self) for _ in range(n)]
