"""LM.score: batched log-likelihoods equal a manual one-example computation."""

from __future__ import annotations

import copy

import pytest
import torch

from assay.errors import AssayError
from assay.models import LM

PROMPTS = [
    "Ada keeps", "The number 4 is", "x", "What does Juno keep near the old hill today?", "Bo", "Fen keeps tin"
]
CONTS = [" apples", " even.", " river stones near the hill.", " blue maps", " keeps old clocks", " boats."]


def manual(lm: LM, prompt: str, cont: str) -> tuple[list[float], bool]:
    """Token log-probs and greedy flag from one unpadded forward pass."""
    p = lm.tokenizer(prompt)["input_ids"]
    c = lm.tokenizer(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([p + c])).logits[0].float(), -1)
    rows = logp[len(p) - 1 : len(p) - 1 + len(c)]
    tok = [rows[k, t].item() for k, t in enumerate(c)]
    return tok, all(rows[k].argmax().item() == t for k, t in enumerate(c))


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_score_equals_manual_for_both_padding_sides(lm, side, batch_size, monkeypatch):
    monkeypatch.setattr(lm.tokenizer, "padding_side", side)
    scores = lm.score(PROMPTS, CONTS, batch_size=batch_size)
    for s, p, c in zip(scores, PROMPTS, CONTS):
        tok, greedy = manual(lm, p, c)
        assert s.n_tokens == len(tok) == len(s.token_logprobs)
        torch.testing.assert_close(torch.tensor(s.token_logprobs), torch.tensor(tok), atol=1e-5, rtol=0)
        assert abs(s.logprob - sum(tok)) < 1e-5
        assert s.greedy == greedy
        assert s.logprob < 0


def test_prompt_and_continuation_are_tokenized_apart(llama):
    # " apples" after "Ada keeps" would merge differently if the joined string were re-tokenized.
    s = llama.score(["Ada keeps"], [" apples"])[0]
    assert s.n_tokens == len(llama.tokenizer(" apples", add_special_tokens=False)["input_ids"])


def test_greedy_flag_true_for_argmax_token_and_false_otherwise(lm):
    prompt = "The number 4 is"
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    logits = lm.forward(ids)[0, -1]
    best, worst = logits.argmax().item(), logits.argmin().item()
    best_text, worst_text = (lm.tokenizer.decode([t]) for t in (best, worst))
    assert lm.tokenizer(best_text, add_special_tokens=False)["input_ids"] == [best]
    s_best, s_worst = lm.score([prompt, prompt], [best_text, worst_text])
    assert s_best.greedy and not s_worst.greedy
    assert s_best.logprob == pytest.approx(torch.log_softmax(logits, -1)[best].item(), abs=1e-5)
    assert s_best.logprob > s_worst.logprob


def test_tokenizer_without_pad_token_pads_with_eos(llama, monkeypatch):
    tok = copy.deepcopy(llama.tokenizer)
    tok.pad_token = None
    tok.padding_side = "left"
    lm = LM(llama.model, tok)
    assert lm.pad_id == tok.eos_token_id
    for s, p, c in zip(lm.score(PROMPTS, CONTS), PROMPTS, CONTS):
        assert abs(s.logprob - sum(manual(lm, p, c)[0])) < 1e-5


def test_score_rejects_empty_continuation_and_mismatched_lengths(llama):
    with pytest.raises(AssayError, match="continuation 1 .* has no tokens"):
        llama.score(["a", "b"], [" x", ""])
    with pytest.raises(AssayError, match="2 prompts but 1 continuations"):
        llama.score(["a", "b"], [" x"])


@pytest.mark.parametrize("packed", [True, False])
def test_score_choices_equals_scoring_each_pair_alone(lm, packed):
    from assay.models.scoring import score_choices

    lm._packs_options = None if packed else False  # False forces the pair-by-pair fallback
    choices = [[c, c + " and more", " x"] for c in CONTS]
    fast = score_choices(lm, PROMPTS, choices, batch_size=4)
    for prompt, cs, got in zip(PROMPTS, choices, fast):
        want = [sum(manual(lm, prompt, c)[0]) for c in cs]
        assert got == pytest.approx(want, abs=1e-4)
    if packed and lm._packs_options is False:
        pytest.skip(f"{type(lm.model).__name__} takes no 4D mask: scored by the fallback")
    with pytest.raises(AssayError, match="no continuations"):
        score_choices(lm, PROMPTS[:1], [[]])
