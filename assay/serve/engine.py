"""`Engine`: one model behind a bounded queue, worked by one thread in batches.

Every prompt of every request becomes one `Work` item. The worker takes whatever is queued
(up to ``max_batch`` items), groups items that can share a forward pass (scoring; greedy
generation; sampling without a seed) and runs each group batched through the `LM` wrapper,
so concurrent clients share passes. A sampled item with a seed runs alone, so its text
depends only on its own prompt and seed, never on who else was queued.

A full queue refuses the whole request at once (`Busy`, which the app answers with 503);
nothing waits without bound.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from assay.errors import AssayError
from assay.models import LM

logger = logging.getLogger(__name__)

__all__ = ["Busy", "Engine", "Generated", "Scored", "Work"]


class Busy(AssayError):
    """The queue cannot take the request now; the client should retry later."""


@dataclass(frozen=True)
class Scored:
    """Log-probabilities of a token sequence: entry i is token i given tokens before it (entry
    0 is None: nothing predicts the first token); ``top[i]`` the ``top`` most likely tokens at
    position i as (token id, log-probability), most likely first (None at 0)."""

    token_logprobs: list[float | None]
    top: list[list[tuple[int, float]] | None]


@dataclass(frozen=True)
class Generated:
    ids: list[int]          # the new tokens, with the end token that stopped them (if one did)
    stopped: bool           # True when an end-of-turn or EOS token stopped it


@dataclass
class Work:
    """One prompt's job: ``kind`` "score" (log-probabilities of ``ids``) or "generate"
    (continue ``ids`` by up to ``max_tokens``)."""

    kind: str
    ids: list[int]
    top: int = 0
    max_tokens: int = 16
    temperature: float = 0.0
    seed: int | None = None
    future: Future = field(default_factory=Future)

    def group(self) -> tuple:
        """Items with the same group run in one batch."""
        if self.kind == "score":
            return ("score",)
        if self.temperature == 0:
            return ("greedy",)
        if self.seed is None:
            return ("sample", self.temperature)
        return ("seeded", id(self))


class Engine:
    """Runs `Work` for one model: ``submit(items)`` returns their futures (or raises `Busy`);
    ``start()``/``stop()`` run and end the worker thread."""

    def __init__(self, lm: LM, *, max_queue: int = 256, max_batch: int = 32) -> None:
        if max_queue < 1 or max_batch < 1:
            raise AssayError("max_queue and max_batch must be at least 1")
        self.lm = lm
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0  # items queued or running
        self._thread: threading.Thread | None = None
        self.batches: list[int] = []  # size of every batch run, for the benchmark and tests

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="assay-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then end the worker thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # ---- submitting --------------------------------------------------------------

    def submit(self, items: list[Work]) -> list[Future]:
        with self._lock:
            if self._pending + len(items) > self.max_queue:
                raise Busy(f"the server's queue is full ({self._pending} prompts waiting, limit "
                           f"{self.max_queue}); retry shortly")
            self._pending += len(items)
        for item in items:
            self._queue.put(item)
        return [item.future for item in items]

    # ---- the worker --------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            taken = [first]
            stop = False
            while len(taken) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                taken.append(more)
            groups: dict[tuple, list[Work]] = {}
            for item in taken:
                groups.setdefault(item.group(), []).append(item)
            for group in groups.values():
                self._run(group)
            with self._lock:
                self._pending -= len(taken)
            if stop:
                return

    def _run(self, items: list[Work]) -> None:
        self.batches.append(len(items))
        try:
            results = (self.score([w.ids for w in items], max(w.top for w in items))
                       if items[0].kind == "score" else self._generate(items))
        except Exception as error:  # the request fails, the server keeps serving
            logger.exception("batch of %d failed", len(items))
            for item in items:
                item.future.set_exception(error)
            return
        for item, result in zip(items, results):
            if item.kind == "score" and item.top < len(result.top[-1] or []):
                result = Scored(result.token_logprobs,
                                [t if t is None else t[:item.top] for t in result.top])
            item.future.set_result(result)

    # ---- the model's work (also called directly: in-process use and tests) ----------

    @torch.no_grad()
    def score(self, seqs: list[list[int]], top: int = 0) -> list[Scored]:
        """Log-probabilities of each token of each sequence given the tokens before it, in
        one right-padded batch (as `LM.score` pads), normalised in fp32."""
        lm = self.lm
        ids, mask = lm.batch(seqs, "right")
        logits = lm.logits(ids=ids, mask=mask)
        out = []
        for b, seq in enumerate(seqs):
            if len(seq) < 2:
                out.append(Scored([None] * len(seq), [None] * len(seq)))
                continue
            rows = F.log_softmax(logits[b, : len(seq) - 1].float(), dim=-1)  # predicts 1..n-1
            target = torch.tensor(seq[1:], device=rows.device)
            tok = rows.gather(1, target[:, None])[:, 0].tolist()
            tops: list[list[tuple[int, float]] | None] = [None]
            if top:
                values, index = rows.topk(min(top, rows.shape[-1]), dim=-1)
                tops += [list(zip(i, v)) for i, v in zip(index.tolist(), values.tolist())]
            else:
                tops += [[] for _ in tok]
            out.append(Scored([None, *tok], tops))
        return out

    def _generate(self, items: list[Work]) -> list[Generated]:
        lm = self.lm
        first = items[0]
        sample = first.temperature > 0
        seed = first.seed if first.seed is not None else (random.randrange(2**31) if sample else None)
        rows = lm.generate_ids([w.ids for w in items], max(w.max_tokens for w in items),
                               do_sample=sample, temperature=first.temperature or 1.0, seed=seed,
                               batch_size=len(items))
        ends = set(lm.end_token_ids)
        out = []
        for item, row in zip(items, rows):
            row = row[: item.max_tokens]  # a longer batch ran on; greedy text is unchanged
            cut = next((k for k, t in enumerate(row) if t in ends), None)
            out.append(Generated(row if cut is None else row[: cut + 1], cut is not None))
        return out
