"""LM.generate: batched greedy equals a manual greedy loop; stopping; seeded sampling; chat."""

from __future__ import annotations

import pytest
import torch

from assay.errors import AssayError
from assay.world.chat import END, render_prompt

PROMPTS = ["Ada keeps", "The number 4 is", "x", "What does Juno keep near the old hill today?"]


def greedy_ids(lm, prompt: str, n: int) -> list[int]:
    """n greedy tokens from full forward passes, no cache, no padding, no stopping."""
    ids = lm.encode([prompt])[0]
    new = []
    with torch.no_grad():
        for _ in range(n):
            t = lm.model(torch.tensor([ids + new])).logits[0, -1].argmax().item()
            new.append(t)
    return new


def expected_text(lm, new: list[int], ends) -> str:
    cut = next((k for k, t in enumerate(new) if t in ends), len(new))
    return lm.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_batched_greedy_equals_unbatched_and_manual_loop(lm, monkeypatch):
    monkeypatch.setattr(lm.tokenizer, "padding_side", "right")  # generate pads left regardless
    batched = lm.generate(PROMPTS, max_new_tokens=10, batch_size=4)
    single = [lm.generate([p], max_new_tokens=10)[0] for p in PROMPTS]
    manual = [expected_text(lm, greedy_ids(lm, p, 10), lm.end_token_ids) for p in PROMPTS]
    assert batched == single == manual
    assert lm.tokenizer.padding_side == "right"
    assert any(len(t) > 0 for t in batched)


def test_stops_at_end_token_and_strips_it(lm, monkeypatch):
    prompt = PROMPTS[0]
    new = greedy_ids(lm, prompt, 8)
    k = next(k for k in range(2, 8) if new[k] not in new[:k])  # first fresh token after two steps
    monkeypatch.setattr(lm, "end_token_ids", [new[k]])
    out = lm.generate([prompt, PROMPTS[1]], max_new_tokens=8)
    assert out[0] == lm.tokenizer.decode(new[:k], skip_special_tokens=True)
    assert out[1] == expected_text(lm, greedy_ids(lm, PROMPTS[1], 8), [new[k]])


def test_end_of_turn_and_eos_are_end_tokens(llama):
    tok = llama.tokenizer
    assert tok.convert_tokens_to_ids(END) in llama.end_token_ids
    assert tok.eos_token_id in llama.end_token_ids


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(lm):
    state = torch.random.get_rng_state()
    a = lm.generate(PROMPTS, max_new_tokens=12, do_sample=True, temperature=2.0, seed=7)
    b = lm.generate(PROMPTS, max_new_tokens=12, do_sample=True, temperature=2.0, seed=7)
    c = lm.generate(PROMPTS, max_new_tokens=12, do_sample=True, temperature=2.0, seed=8)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == b
    assert a != c
    assert a != lm.generate(PROMPTS, max_new_tokens=12)


def test_near_zero_temperature_sampling_is_greedy(lm):
    cold = lm.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1e-4, seed=0)
    assert cold == lm.generate(PROMPTS, max_new_tokens=8)


def test_chat_wraps_prompt_in_the_chat_template(llama):
    assert llama.chat_prompt("What does Bo keep?") == render_prompt("What does Bo keep?")
    out = llama.generate(["What does Bo keep?"], max_new_tokens=6, chat=True)
    assert out == llama.generate([render_prompt("What does Bo keep?")], max_new_tokens=6)


def test_chat_without_template_is_an_error(llama, monkeypatch):
    monkeypatch.setattr(llama.tokenizer, "chat_template", None)
    with pytest.raises(AssayError, match="no chat template"):
        llama.generate(["hi"], chat=True)
