"""Gradients w.r.t. input embeddings, as GCG-style attacks use them."""

from __future__ import annotations

import copy

import pytest
import torch

from assay.models import LM

IDS = torch.tensor([[1, 40, 41, 50, 60, 70]])  # distinct tokens: one embedding row each
TARGET = 77


def target_logprob(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits[0, -1], -1)[TARGET]


def test_forward_embeds_matches_forward(lm):
    with torch.no_grad():
        torch.testing.assert_close(lm.forward_embeds(lm.embed(IDS)), lm.forward(IDS))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(lm.forward_embeds(lm.embed(IDS), mask)[:, 2:], lm.forward(IDS[:, 2:]))


def test_embed_gradient_equals_embedding_weight_gradient_rows(llama):
    E = llama.embedding_matrix  # (V, D); llama's lm_head is untied, so only inputs touch E
    assert E.shape == (len(llama.tokenizer), llama.d_model)
    one_hot = torch.nn.functional.one_hot(IDS, E.shape[0]).to(E.dtype).requires_grad_(True)
    embeds = one_hot @ E.detach()
    embeds.retain_grad()
    target_logprob(llama.forward_embeds(embeds)).backward()

    llama.model.zero_grad(set_to_none=True)
    target_logprob(llama.model(input_ids=IDS).logits).backward()
    rows = E.grad[IDS[0]]
    llama.model.zero_grad(set_to_none=True)

    torch.testing.assert_close(embeds.grad[0], rows)
    torch.testing.assert_close(one_hot.grad, embeds.grad @ E.detach().T)
    assert rows.abs().max() > 1e-4


# Llama's RMSNorm and rotary tables compute in float32 even in a float64 model: looser check.
@pytest.mark.parametrize("name,eps,rtol", [("gpt2", 1e-5, 1e-6), ("llama", 1e-3, 2e-3)])
def test_embed_gradient_matches_finite_differences(request, name, eps, rtol):
    base = request.getfixturevalue(name)
    lm = LM(copy.deepcopy(base.model).double(), base.tokenizer)
    embeds = lm.embed(IDS).detach().requires_grad_(True)
    target_logprob(lm.forward_embeds(embeds)).backward()
    d = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        plus = target_logprob(lm.forward_embeds(embeds + eps * d))
        minus = target_logprob(lm.forward_embeds(embeds - eps * d))
    numeric = ((plus - minus) / (2 * eps)).item()
    analytic = (embeds.grad * d).sum().item()
    assert abs(analytic) > 1e-3
    assert abs(numeric - analytic) < rtol * abs(analytic)
