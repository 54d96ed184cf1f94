"""Induction-head scores on hand-built and tiny random Llama models."""

import numpy as np
import pytest
import torch

from assay.errors import AssayError
from assay.methods.induction import (
    CharTokenizer,
    attention_only,
    copying_scores,
    head_attention,
    icl_score,
    repeat_spans,
    repeated_tokens,
    token_losses,
)


def _llama(vocab=12, d=8, layers=2, heads=2, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=16,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=64,
                         tie_word_embeddings=False, attn_implementation="eager")
    return LlamaForCausalLM(config).eval()


def test_char_tokenizer_round_trips_and_names_unknown_characters():
    tok = CharTokenizer(["abc", "cab!"])
    assert len(tok) == 4 and tok.chars == ["!", "a", "b", "c"]
    assert tok.decode(tok.encode("cab!")) == "cab!"
    with pytest.raises(AssayError, match="'z'"):
        tok.encode("az")


def test_repeat_spans_copies_an_earlier_span_to_the_end_at_varying_offsets():
    rng = np.random.default_rng(0)
    rows = np.arange(40 * 32).reshape(40, 32)  # every token distinct, so copies are findable
    out = repeat_spans(rows, 8, rng)
    offsets = set()
    for before, after in zip(rows, out):
        changed = np.nonzero(before != after)[0]
        k = 32 - changed[0]
        assert 4 <= k <= 8 and changed[-1] == 31  # the last k tokens, k in [span/2, span]
        start = int(np.nonzero(before == after[-k])[0][0])
        assert start + k <= 32 - k  # the first copy ends before the second begins
        assert np.array_equal(after[-k:], before[start:start + k])
        assert np.array_equal(after[:-k], before[:-k])
        offsets.add(32 - k - start)
    assert len(offsets) > 5
    with pytest.raises(AssayError, match="half the window"):
        repeat_spans(rows, 20, rng)


def test_repeated_tokens_are_written_twice_and_follow_the_frequencies():
    probs = np.array([0.7, 0.1, 0.1, 0.1, 0.0])
    ids = repeated_tokens(200, 10, probs, seed=0)
    assert ids.shape == (200, 20) and torch.equal(ids[:, :10], ids[:, 10:])
    assert (ids == 4).sum() == 0 and 0.6 < (ids == 0).float().mean() < 0.8
    with pytest.raises(AssayError, match="probability"):
        repeated_tokens(2, 10, np.array([0.5, 0.6]), seed=0)


def test_head_attention_reads_the_diagonals_of_each_heads_pattern():
    model = _llama()
    ids = repeated_tokens(3, 6, np.full(12, 1 / 12), seed=1)
    prefix, previous = head_attention(model, ids)
    assert prefix.shape == previous.shape == (3, 2, 2)
    out = model(input_ids=ids, output_attentions=True)
    a = out.attentions[1][2, 0]  # sequence 2, block 1, head 0: (T, T)
    expect_prefix = np.mean([a[q, q - 6 + 1].item() for q in range(6, 11)])
    expect_previous = np.mean([a[t, t - 1].item() for t in range(1, 12)])
    assert prefix[2, 1, 0] == pytest.approx(expect_prefix, abs=1e-6)
    assert previous[2, 1, 0] == pytest.approx(expect_previous, abs=1e-6)
    with pytest.raises(AssayError, match="written twice"):
        head_attention(model, torch.arange(12)[None])


def test_copying_scores_are_plus_one_for_a_copier_and_minus_one_for_its_negation():
    model = attention_only(_llama(vocab=12, d=8, layers=1, heads=2))
    with torch.no_grad():
        embed = torch.randn(12, 8)
        model.get_input_embeddings().weight.copy_(embed)
        model.get_output_embeddings().weight.copy_(embed)  # unembedding = embedding
        attn = model.model.layers[0].self_attn
        attn.v_proj.weight.copy_(torch.eye(8))
        attn.o_proj.weight.copy_(torch.eye(8))             # head 0 and head 1: identity
        attn.o_proj.weight[:, 4:] *= -1                    # head 1 writes the negation
    scores = copying_scores(model)
    assert scores.shape == (1, 2)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert scores[0, 1] == pytest.approx(-1.0, abs=1e-6)


def test_attention_only_removes_the_mlps():
    model = _llama()
    ids = torch.randint(0, 12, (2, 10))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.zero_()  # an MLP that writes nothing
        zeroed = model(input_ids=ids).logits
        attention_only(model)
        after = model(input_ids=ids).logits
    assert not torch.allclose(before, zeroed)
    assert torch.allclose(zeroed, after, atol=1e-6)


def test_token_losses_and_icl_score():
    model = _llama()
    ids = torch.randint(0, 12, (4, 16))
    losses = token_losses(model, ids)
    assert losses.shape == (4, 15)
    assert losses.mean() == pytest.approx(model(input_ids=ids, labels=ids).loss.item(), abs=1e-5)
    toy = np.tile(np.linspace(3.0, 1.0, 15), (2, 1))  # loss falls along the context
    icl = icl_score(toy, (0, 3), (12, 15))
    assert icl == pytest.approx(toy[:, 12:15].mean(1) - toy[:, 0:3].mean(1))
    assert (icl < 0).all()
    with pytest.raises(AssayError, match="ordered"):
        icl_score(toy, (5, 10), (8, 15))
