"""Activation sites: names, reads that decompose the residual stream, writes, clean removal."""

from __future__ import annotations

import pytest
import torch

from assay.errors import AssayError

IDS = torch.tensor([[1, 40, 41, 50, 60, 70], [1, 42, 43, 44, 45, 46]])


def all_hooks(model) -> list:
    return [(n, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()]


def test_site_names(lm):
    assert lm.n_layers == 2 and lm.d_model == 32
    assert len(lm.sites) == 2 + 4 * lm.n_layers
    assert lm.sites[0] == "embed" and lm.sites[-1] == "final"
    kinds = ("resid_pre", "attn_out", "mlp_out", "resid_post")
    assert {f"blocks.1.{k}" for k in kinds} <= set(lm.sites)


def test_reads_have_shape_and_decompose_the_residual_stream(lm):
    with lm.hooks(read=lm.sites) as cache:
        logits = lm.forward(IDS)
    for site in lm.sites:
        assert cache[site].shape == (2, 6, 32), site
        assert not cache[site].requires_grad
    for i in range(lm.n_layers):
        pre, post = cache[f"blocks.{i}.resid_pre"], cache[f"blocks.{i}.resid_post"]
        torch.testing.assert_close(pre + cache[f"blocks.{i}.attn_out"] + cache[f"blocks.{i}.mlp_out"], post)
        if i + 1 < lm.n_layers:
            assert torch.equal(post, cache[f"blocks.{i + 1}.resid_pre"])
    assert torch.equal(cache["embed"], cache["blocks.0.resid_pre"])
    torch.testing.assert_close(lm.model.get_output_embeddings()(cache["final"]), logits)


def test_embed_site_is_what_enters_block_zero(llama, gpt2):
    with llama.hooks(read=["embed"]) as cache:
        llama.forward(IDS)
    assert torch.equal(cache["embed"], llama.embed(IDS))
    with gpt2.hooks(read=["embed"]) as cache:
        gpt2.forward(IDS)
    wpe = gpt2.model.transformer.wpe.weight[:6]
    torch.testing.assert_close(cache["embed"], gpt2.embed(IDS) + wpe)


def test_noop_writes_leave_logits_bit_identical(lm):
    base = lm.forward(IDS)
    with lm.hooks(read=["final"], write={s: (lambda x: x) for s in lm.sites}):
        same = lm.forward(IDS)
    with lm.hooks(write={s: (lambda x: None) for s in lm.sites}):
        same_none = lm.forward(IDS)
    assert torch.equal(base, same) and torch.equal(base, same_none)


def test_write_changes_logits_and_read_sees_written_value(lm):
    base = lm.forward(IDS)
    with lm.hooks(read=["blocks.0.mlp_out", "final"], write={"blocks.0.mlp_out": torch.zeros_like}) as cache:
        ablated = lm.forward(IDS)
    assert torch.equal(cache["blocks.0.mlp_out"], torch.zeros(2, 6, 32))
    assert (ablated - base).abs().max() > 1e-3
    torch.testing.assert_close(lm.model.get_output_embeddings()(cache["final"]), ablated)
    assert torch.equal(lm.forward(IDS), base)  # gone after the block


def test_write_on_resid_pre_propagates_exactly(llama):
    v = torch.randn(32, generator=torch.Generator().manual_seed(0))
    with llama.hooks(read=["blocks.0.resid_post", "blocks.1.resid_pre"]) as clean:
        llama.forward(IDS)
    with llama.hooks(read=["blocks.1.resid_pre"], write={"blocks.1.resid_pre": lambda x: x + v}) as steered:
        llama.forward(IDS)
    torch.testing.assert_close(steered["blocks.1.resid_pre"], clean["blocks.0.resid_post"] + v)


def test_writes_apply_to_score_and_all_passes_are_kept(lm):
    base = lm.score(["Ada keeps"], [" apples"])[0].logprob
    with lm.hooks(read=["final"], write={"blocks.1.attn_out": lambda x: 3 * x}) as cache:
        changed = lm.score(["Ada keeps", "x"], [" apples", " blue"], batch_size=1)[0].logprob
        lm.forward(IDS)
    assert abs(changed - base) > 1e-3
    assert len(cache.all("final")) == 3
    assert cache["final"].shape == (2, 6, 32)
    with pytest.raises(AssayError, match="no activation cached for 'embed'"):
        cache["embed"]


def test_hooks_are_removed_when_the_block_raises(lm):
    before, base = all_hooks(lm.model), lm.forward(IDS)
    with pytest.raises(RuntimeError, match="boom"):
        with lm.hooks(read=lm.sites, write={"blocks.0.mlp_out": torch.zeros_like}):
            assert all_hooks(lm.model) != before
            raise RuntimeError("boom")
    assert all_hooks(lm.model) == before
    assert all(not h and not p for _, h, p in before)
    assert torch.equal(lm.forward(IDS), base)


def test_unknown_site_lists_valid_ones(llama):
    expected = (
        "unknown site 'blocks.40.resid_post': model has 2 layers (blocks.0-1); "
        "sites are embed, blocks.{i}.resid_pre|resid_post|attn_out|mlp_out, final"
    )
    for site, write in [("blocks.40.resid_post", None), ("blocks.0.nope", None), ("resid", "x")]:
        with pytest.raises(AssayError) as err:
            with llama.hooks(read=[site] if write is None else [], write={site: abs} if write else None):
                pass
        assert str(err.value) == expected.replace("blocks.40.resid_post", site)
    assert all_hooks(llama.model) == [(n, {}, {}) for n, _ in llama.model.named_modules()]


def test_write_with_wrong_shape_is_an_error(llama):
    with pytest.raises(AssayError, match=r"returned shape \(2, 6, 3\)"):
        with llama.hooks(write={"final": lambda x: x[..., :3]}):
            llama.forward(IDS)


def test_hooks_see_every_generation_step(llama, monkeypatch):
    monkeypatch.setattr(llama, "end_token_ids", [])
    with llama.hooks(read=["final"]) as cache:
        llama.generate(["Ada keeps"], max_new_tokens=4)
    steps = cache.all("final")
    assert [s.shape[1] for s in steps] == [len(llama.encode(["Ada keeps"])[0]), 1, 1, 1]


def _tiny(arch: str, vocab: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(2)
    if arch == "gpt_neox":
        config = GPTNeoXConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, initializer_range=0.3,
        )
        return GPTNeoXForCausalLM(config).eval()
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3,
    )
    return Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize("arch", ["gpt_neox", "qwen2"])
def test_other_architectures_decompose_the_same_way(arch, tokenizer):
    from assay.models import LM

    lm = LM(_tiny(arch, len(tokenizer)), tokenizer)
    with lm.hooks(read=lm.sites) as cache:
        logits = lm.forward(IDS)
    for i in range(lm.n_layers):
        parts = sum(cache[f"blocks.{i}.{k}"] for k in ("resid_pre", "attn_out", "mlp_out"))
        torch.testing.assert_close(parts, cache[f"blocks.{i}.resid_post"])
    torch.testing.assert_close(lm.model.get_output_embeddings()(cache["final"]), logits)
