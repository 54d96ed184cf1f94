"""Fast log-likelihood scoring of many continuations per prompt (multiple choice).

Each prompt and all of its continuations run as one packed row: the prompt's tokens, then
every continuation's tokens (but its last) one after another, under a tree-shaped
attention mask in which a continuation sees the prompt and its own earlier tokens only,
with positions that restart after the prompt for each one. One forward pass per batch
therefore scores every option of every item, the prompt is computed once, and nothing is
padded beyond the longest packed row. The output layer runs only at the positions that
predict a continuation token. Rows are sorted by packed length and batched.

Tokenization matches `LM.score`: prompt (with BOS) and continuation are tokenized apart
and joined. Models whose attention takes no 4D mask fall back to `LM.score`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from assay.errors import AssayError

__all__ = ["packs", "score_choice_ids", "score_choices"]


@torch.no_grad()
def score_choices(lm, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                  batch_size: int = 64) -> list[np.ndarray]:
    """Per prompt, the summed log-probability of each of its continuations (float64 array).

    ``choices[i]`` are the continuations of ``prompts[i]`` (any number, at least one each).
    """
    if len(prompts) != len(choices):
        raise AssayError(f"score_choices got {len(prompts)} prompts but {len(choices)} choice "
                         "lists; pass one list of continuations per prompt")
    prompt_ids = lm.encode(prompts)
    cont_ids = _continuations(lm.tokenizer, choices)
    for i, p in enumerate(prompt_ids):
        if not p:
            raise AssayError(f"prompt {i} is empty and the tokenizer adds no BOS token; give a "
                             "non-empty prompt")
    if not packs(lm):
        return _one_at_a_time(lm, prompts, choices, batch_size)
    out: list[np.ndarray | None] = [None] * len(prompts)
    length = [len(p) + sum(len(c) - 1 for c in cs) for p, cs in zip(prompt_ids, cont_ids)]
    order = sorted(range(len(prompts)), key=lambda i: length[i])
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for i, values in zip(chunk, score_choice_ids(lm, [prompt_ids[i] for i in chunk],
                                                   [cont_ids[i] for i in chunk])):
            out[i] = values
    return out  # type: ignore[return-value]


def _continuations(tokenizer, choices: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Token ids of every continuation; the same text is tokenized once."""
    texts = sorted({c for cs in choices for c in cs})
    encoded = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])) \
        if texts else {}
    out = []
    for i, cs in enumerate(choices):
        if not cs:
            raise AssayError(f"prompt {i} has no continuations; give at least one")
        for c in cs:
            if not encoded[c]:
                raise AssayError(f"continuation {c!r} of prompt {i} has no tokens; every "
                                 "continuation needs at least one")
        out.append([encoded[c] for c in cs])
    return out


def packs(lm) -> bool:
    """Whether the model takes a 4D attention mask through its decoder, so that
    `score_choice_ids` can score it (checked once per LM)."""
    known = getattr(lm, "_packs_options", None)
    if known is None:
        model = lm.model
        config = getattr(model, "config", None)
        known = (hasattr(model, "get_decoder") and model.get_output_embeddings() is not None
                 and getattr(config, "final_logit_softcapping", None) is None
                 and getattr(config, "_attn_implementation", "eager") in ("sdpa", "eager"))
        if known:
            try:
                score_choice_ids(lm, [[lm.pad_id, lm.pad_id]], [[[lm.pad_id], [lm.pad_id] * 2]])
            except Exception:  # an architecture that rejects 4D masks scores pair by pair
                known = False
        lm._packs_options = known
    return known


def _one_at_a_time(lm, prompts, choices, batch_size: int) -> list[np.ndarray]:
    flat = lm.score([p for p, cs in zip(prompts, choices) for _ in cs],
                    [c for cs in choices for c in cs], batch_size)
    values = np.array([s.logprob for s in flat])
    return np.split(values, np.cumsum([len(cs) for cs in choices])[:-1])


def score_choice_ids(lm, prompts: list[list[int]], conts: list[list[list[int]]]) -> list[np.ndarray]:
    """Per prompt (token ids), the summed log-probability of each continuation (token ids),
    from one forward pass over packed rows (the prompt, then every continuation but its last
    token). Check `packs` first: a model without 4D-mask attention cannot take packed rows."""
    device = lm.device
    rows, positions, starts = [], [], []
    for p, cs in zip(prompts, conts):
        ids, pos, st = list(p), list(range(len(p))), []
        for c in cs:
            st.append(len(ids))
            ids += c[:-1]
            pos += range(len(p), len(p) + len(c) - 1)
        rows.append(ids)
        positions.append(pos)
        starts.append(st)
    b, width = len(rows), max(len(r) for r in rows)
    ids = torch.full((b, width), lm.pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    allowed = torch.zeros((b, width, width), dtype=torch.bool)  # (B, query, key)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    gather_b, gather_t, targets, owner = [], [], [], []
    k = 0
    for i, (p, cs, row, st) in enumerate(zip(prompts, conts, rows, starts)):
        n, plen = len(row), len(p)
        ids[i, :n] = torch.tensor(row)
        pos[i, :n] = torch.tensor(positions[i])
        allowed[i, :plen, :plen] = causal[:plen, :plen]
        for c, s0 in zip(cs, st):
            m = len(c) - 1
            allowed[i, s0:s0 + m, :plen] = True
            allowed[i, s0:s0 + m, s0:s0 + m] = causal[:m, :m]
            # the prompt's last position predicts the first token, each input the next
            at = [plen - 1, *range(s0, s0 + m)]
            gather_b += [i] * len(at)
            gather_t += at
            targets += c
            owner += [k] * len(at)
            k += 1
        pad = torch.arange(n, width)
        allowed[i, pad, pad] = True  # padding attends to itself only, so no row is empty
    hidden = lm.model.get_decoder()(input_ids=ids.to(device), attention_mask=allowed[:, None].to(device),
                                    position_ids=pos.to(device), use_cache=False).last_hidden_state
    h = hidden[torch.tensor(gather_b, device=device), torch.tensor(gather_t, device=device)]  # (N, D)
    logp = F.log_softmax(lm.model.get_output_embeddings()(h).float(), dim=-1)  # (N, V)
    tok = logp.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0].double()
    sums = torch.zeros(k, dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), tok)
    return np.split(sums.cpu().numpy(), np.cumsum([len(cs) for cs in conts])[:-1])
