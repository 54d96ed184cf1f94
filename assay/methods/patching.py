"""Activation patching and causal tracing on any LM, through its activation sites.

Activation patching (`patch`) runs a source prompt, keeps its activation at one site and
some positions, and runs a target prompt with those activations written in; the change in
the target's output is the effect of that site. Patching a run into itself changes
nothing, which is the method's own sanity check.

Causal tracing (`trace`; Meng et al. 2022, arXiv 2202.05262) asks where a model recalls a
fact about a subject:

1. clean run: the prompt, and the probability of the true answer ``p_clean``;
2. corrupted runs: Gaussian noise added to the subject tokens' input embeddings
   (``noise`` sets its standard deviation, conventionally three times the spread of the
   embeddings, `noise_scale`), so the answer's probability drops to ``p_corrupt``;
3. restored runs: the corrupted run again, with one site (a block's output, MLP output
   or attention output) at one position set back to its clean value; how much of the
   answer's probability comes back there is that state's indirect effect.

The answer's probability is that of its first token, as in the paper (or, on request, of
its whole token sequence). `group_positions` maps each prompt's positions onto
the groups the paper reports (first, middle and last subject token; the first token
after the subject, further tokens, the last token) so traces of different prompts average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from assay.errors import AssayError

__all__ = ["GROUPS", "TRACE_KINDS", "Trace", "answer_logprobs", "edited_choice_logprobs", "group_positions",
           "grouped", "locate_subject", "noise_scale", "patch", "read_positions", "trace"]

TRACE_KINDS = ("resid_post", "mlp_out", "attn_out")
GROUPS = ("first subject", "middle subject", "last subject", "first after", "further tokens",
          "last token")


def locate_subject(lm, prompt: str, subject: str) -> tuple[list[int], list[int]]:
    """``(ids, positions)``: the prompt's token ids and the positions of the subject's tokens
    (its last occurrence), found by tokenizing the text up to and through the subject."""
    at = prompt.rfind(subject)
    if at < 0 or not subject:
        raise AssayError(f"subject {subject!r} does not occur in the prompt {prompt!r}")
    ids = lm.encode([prompt])[0]
    before = lm.encode([prompt[:at].rstrip()])[0]  # a leading space belongs to the subject's token
    through = lm.encode([prompt[: at + len(subject)]])[0]
    if ids[: len(through)] != through or through[: len(before)] != before or len(through) == len(before):
        raise AssayError(f"the subject {subject!r} does not fall on token boundaries in "
                         f"{prompt!r}; put a space or punctuation around it")
    return ids, list(range(len(before), len(through)))


def answer_logprobs(logits: torch.Tensor, ids: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """(B,) summed log-probability of the tokens after ``n_prompt`` in each row of ``ids``
    (B, T), from the rows' ``logits`` (B, T, V)."""
    rows = F.log_softmax(logits[:, n_prompt - 1: -1].float(), dim=-1)  # (B, A, V)
    return rows.gather(-1, ids[:, n_prompt:, None])[..., 0].double().sum(-1)


def _answer_ids(lm, answer: str) -> list[int]:
    ids = lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise AssayError(f"the answer {answer!r} has no tokens: give a non-empty answer")
    return ids


def noise_scale(lm, texts: Sequence[str], factor: float = 3.0) -> float:
    """``factor`` times the standard deviation of the input embeddings of ``texts``' tokens."""
    ids = torch.tensor([t for row in lm.encode(list(texts)) for t in row])
    with torch.no_grad():
        return factor * float(lm.embed(ids).float().std())


@torch.no_grad()
def patch(lm, source: str, target: str, site: str, positions: Sequence[int],
          answer: str | None = None) -> torch.Tensor:
    """Run ``target`` with ``site`` at ``positions`` taken from a run of ``source``.

    Returns the target's last-position logits (V,), or, with ``answer``, the answer's
    summed log-probability after the target prompt (a 0-d tensor). Positions count from
    the start of each prompt and must exist in both."""
    tail = _answer_ids(lm, answer) if answer is not None else []
    src, tgt = lm.encode([source])[0], lm.encode([target])[0]
    pos = list(positions)
    if not pos or max(pos) >= min(len(src), len(tgt)) or min(pos) < 0:
        raise AssayError(f"patch positions {pos} must lie in both prompts "
                         f"({len(src)} and {len(tgt)} tokens)")
    src_ids = torch.tensor([src], device=lm.device)
    with lm.hooks(read=[site]) as cache:
        lm.forward(src_ids)
    donor = cache[site][0, pos]  # (P, D)

    def write(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, pos] = donor.to(x.dtype)
        return x

    ids = torch.tensor([tgt + tail], device=lm.device)
    with lm.hooks(write={site: write}):
        logits = lm.forward(ids)
    if answer is None:
        return logits[0, len(tgt) - 1]
    return answer_logprobs(logits, ids, len(tgt))[0]


@dataclass(frozen=True)
class Trace:
    """One prompt's causal trace. ``restored[k, l, t]`` is the answer's mean probability over
    noise samples when site kind ``kinds[k]`` of block ``l`` at position ``t`` is restored."""

    tokens: list[str]       # the prompt's tokens, for labelling
    subject: list[int]      # positions of the subject's tokens
    kinds: tuple[str, ...]
    p_clean: float          # answer probability in the clean run
    p_corrupt: float        # mean answer probability over the corrupted runs
    restored: np.ndarray    # (K, L, T)

    @property
    def indirect(self) -> np.ndarray:
        """(K, L, T) restored minus corrupted probability: each state's indirect effect."""
        return self.restored - self.p_corrupt


def trace(lm, prompt: str, subject: str, answer: str, noise: float,
          kinds: Sequence[str] = TRACE_KINDS, samples: int = 3, seed: int = 0,
          first_token: bool = True, batch_size: int = 256) -> Trace:
    """The causal trace of one prompt: restore every (kind, block, position) in turn in
    ``samples`` corrupted runs (noise of standard deviation ``noise`` on the subject
    tokens' embeddings, seeded by ``seed``). ``noise=0`` restores into the clean run itself.
    The answer's probability is that of its first token (as in the paper), or of all its
    tokens with ``first_token=False`` (later tokens then also read the corrupted subject)."""
    for kind in kinds:
        if kind not in TRACE_KINDS:
            raise AssayError(f"unknown trace kind {kind!r}: choose from {', '.join(TRACE_KINDS)}")
    ids, subj = locate_subject(lm, prompt, subject)
    tail = _answer_ids(lm, answer)[:1] if first_token else _answer_ids(lm, answer)
    n_prompt, L, K = len(ids), lm.n_layers, len(kinds)
    row = torch.tensor([ids + tail], device=lm.device)
    sites = [f"blocks.{i}.{k}" for k in kinds for i in range(L)]
    with torch.no_grad(), lm.hooks(read=sites) as cache:
        p_clean = float(answer_logprobs(lm.forward(row), row, n_prompt).exp()[0])
    clean = {s: cache[s][0] for s in sites}  # (T, D) each
    g = torch.Generator().manual_seed(seed)
    eps = noise * torch.randn(samples, len(subj), lm.d_model, generator=g).to(lm.device)

    # Rows: for each sample, one corrupted run with nothing restored, then (kind, block, position).
    plan = [(s, None) for s in range(samples)]
    plan += [(s, (k, i, t)) for s in range(samples) for k in range(K) for i in range(L)
             for t in range(n_prompt)]
    probs = np.empty(len(plan))
    for start in range(0, len(plan), batch_size):
        chunk = plan[start:start + batch_size]
        probs[start:start + len(chunk)] = _run_rows(lm, row, n_prompt, chunk, subj, eps, clean,
                                                    kinds, L)
    p_corrupt = float(probs[:samples].mean())
    restored = probs[samples:].reshape(samples, K, L, n_prompt).mean(0)
    tokens = lm.tokenizer.convert_ids_to_tokens(ids)
    return Trace(tokens, subj, tuple(kinds), p_clean, p_corrupt, restored)


@torch.no_grad()
def _run_rows(lm, row: torch.Tensor, n_prompt: int, chunk, subj: list[int], eps: torch.Tensor,
              clean: dict[str, torch.Tensor], kinds: Sequence[str], L: int) -> np.ndarray:
    """Answer probabilities of one batch of corrupted runs, each maybe with one state restored."""
    sample = torch.tensor([s for s, _ in chunk], device=lm.device)
    subj_t = torch.tensor(subj, device=lm.device)

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, subj_t] += eps[sample].to(x.dtype)  # (B, S, D)
        return x

    writes = {"embed": corrupt}
    for k, kind in enumerate(kinds):
        for layer in range(L):
            hits = [(b, r[2]) for b, (_, r) in enumerate(chunk) if r and r[:2] == (k, layer)]
            if hits:
                site = f"blocks.{layer}.{kind}"
                writes[site] = _restorer([b for b, _ in hits], [t for _, t in hits], clean[site])
    ids = row.expand(len(chunk), -1)
    with lm.hooks(write=writes):
        logits = lm.forward(ids)
    return answer_logprobs(logits, ids, n_prompt).exp().cpu().numpy()


def _restorer(rows: list[int], positions: list[int], clean: torch.Tensor):
    """A write that sets ``x[rows[j], positions[j]]`` to the clean run's state there."""
    r = torch.tensor(rows, device=clean.device)
    t = torch.tensor(positions, device=clean.device)
    values = clean[t]  # (R, D)

    def write(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[r, t] = values.to(x.dtype)
        return x

    return write


def group_positions(tr: Trace) -> list[list[int]]:
    """For each of `GROUPS`, the prompt positions in it (a group may be empty: a one-token
    subject has no middle; the last subject token wins over the first, the last token
    over the first after the subject)."""
    subj, T = tr.subject, len(tr.tokens)
    last = T - 1
    after = [t for t in range(subj[-1] + 1, T) if t != last]
    return [
        [subj[0]] if len(subj) > 1 else [],
        subj[1:-1],
        [subj[-1]],
        after[:1],
        after[1:],
        [last] if last != subj[-1] else [],
    ]


def grouped(tr: Trace, values: np.ndarray | None = None) -> np.ndarray:
    """(K, L, len(GROUPS)) mean of ``values`` (default: the indirect effect) over each group's
    positions; NaN where a group is empty."""
    values = tr.indirect if values is None else values
    out = np.full(values.shape[:2] + (len(GROUPS),), np.nan)
    for g, positions in enumerate(group_positions(tr)):
        if positions:
            out[..., g] = values[..., positions].mean(-1)
    return out


@torch.no_grad()
def read_positions(lm, ids: Sequence[Sequence[int]], positions: Sequence[int],
                   sites: Sequence[str], batch_size: int = 128) -> dict[str, np.ndarray]:
    """{site: (N, D)}: each token sequence's activation at its own position, at each site."""
    if len(ids) != len(positions):
        raise AssayError(f"read_positions got {len(ids)} sequences for {len(positions)} positions")
    out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    for start in range(0, len(ids), batch_size):
        batch = [list(x) for x in ids[start:start + batch_size]]
        pos = torch.tensor(positions[start:start + batch_size], device=lm.device)
        rows, mask = lm.batch(batch, "right")
        with lm.hooks(read=sites) as cache:
            lm.forward(rows, mask)
        for s in sites:
            out[s].append(cache[s][torch.arange(len(batch), device=lm.device), pos].float().cpu())
    return {s: torch.cat(parts).numpy() for s, parts in out.items()}


@torch.no_grad()
def edited_choice_logprobs(lm, ids: Sequence[Sequence[int]], choices: Sequence[Sequence[int]],
                           site: str | None = None, positions: Sequence[int] | None = None,
                           deltas: np.ndarray | torch.Tensor | None = None,
                           batch_size: int = 32) -> np.ndarray:
    """(N, C) summed log-probability of every choice (token ids) after each prompt ``ids[i]``,
    with ``deltas[i]`` (D,) added at ``site`` and position ``positions[i]`` of prompt ``i``
    (no edit when ``site`` is None). The edit sits inside the prompt, so every choice of a
    prompt sees the same edited state. Prompts and their choices run packed, a prompt once
    for all its choices (`assay.models.scoring`), where the model allows it."""
    from assay.models.scoring import packs, score_choice_ids

    n = len(ids)
    if site is not None:
        if positions is None or deltas is None or len(positions) != n or len(deltas) != n:
            raise AssayError("an edit needs one position and one delta vector per prompt")
        deltas = torch.as_tensor(np.asarray(deltas), dtype=torch.float32)
    packed = packs(lm)
    step = batch_size if packed else max(1, batch_size // max(1, len(choices)))
    out = []
    for start in range(0, n, step):
        rows = list(range(start, min(n, start + step)))
        writes = {}
        if site is not None:
            writes[site] = _adder(rows, positions, deltas, lm.device, len(choices) if not packed else 1)
        with lm.hooks(write=writes):
            if packed:
                out.extend(score_choice_ids(lm, [list(ids[i]) for i in rows],
                                         [list(map(list, choices))] * len(rows)))
            else:
                out.extend(_padded_scores(lm, [list(ids[i]) for i in rows], choices))
    return np.stack(out)


def _adder(rows: list[int], positions, deltas: torch.Tensor, device, repeat: int):
    """A write adding ``deltas[i]`` at ``positions[i]`` to batch row j of prompt i = rows[j]
    (each prompt's row repeated ``repeat`` times in a row)."""
    r = torch.arange(len(rows) * repeat, device=device)
    p = torch.tensor([positions[i] for i in rows for _ in range(repeat)], device=device)
    d = deltas[[i for i in rows for _ in range(repeat)]].to(device)

    def edit(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[r, p] += d.to(x.dtype)
        return x

    return edit


def _padded_scores(lm, prompts: list[list[int]], choices) -> list[np.ndarray]:
    """Per prompt, its choices' summed log-probabilities, one padded row per (prompt, choice)."""
    seqs = [p + list(c) for p in prompts for c in choices]
    tokens, mask = lm.batch(seqs, "right")
    logits = lm.forward(tokens, mask)
    k = max(len(c) for c in choices)
    where = torch.zeros((len(seqs), k), dtype=torch.long, device=logits.device)
    target = torch.zeros_like(where)
    keep = torch.zeros((len(seqs), k), dtype=torch.bool, device=logits.device)
    for b, (p, c) in enumerate((p, c) for p in prompts for c in choices):
        where[b, :len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
        target[b, :len(c)] = torch.tensor(list(c))
        keep[b, :len(c)] = True
    rows = logits.gather(1, where[..., None].expand(-1, -1, logits.shape[-1])).float()
    tok = F.log_softmax(rows, -1).gather(-1, target[..., None])[..., 0]  # (B, K)
    sums = (tok * keep).double().sum(1).cpu().numpy()
    return list(sums.reshape(len(prompts), len(choices)))
