"""Tiny randomly initialised Llama and GPT-2 models, saved with save_pretrained once per session."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from assay.models import LM, load
from assay.training.tokenizer import train_tokenizer
from assay.world.chat import render_dialogue

NAMES = ["Ada", "Bo", "Cyra", "Dov", "Eli", "Fen", "Gus", "Hana", "Ivo", "Juno"]
THINGS = ["apples", "river stones", "blue maps", "old clocks", "tin boats"]


def _sentences() -> list[str]:
    facts = [f"{n} keeps {t} near the hill." for n, t in itertools.product(NAMES, THINGS)]
    chats = [render_dialogue(f"What does {n} keep?", f"{n} keeps {t}.") for n, t in zip(NAMES, THINGS * 2)]
    return facts + chats + [f"The number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(40)]


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(_sentences(), vocab_size=300)


def _ids(tok) -> dict:
    return dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        initializer_range=0.3, **_ids(tokenizer),  # wide init: peaked logits, no argmax near-ties
    )
    folder = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(1)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128,
        initializer_range=0.3, **_ids(tokenizer),
    )
    folder = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama(llama_dir) -> LM:
    return load(f"hf:{llama_dir}")


@pytest.fixture(scope="session")
def gpt2(gpt2_dir) -> LM:
    return load(f"hf:{gpt2_dir}")


@pytest.fixture(params=["llama", "gpt2"])
def lm(request) -> LM:
    return request.getfixturevalue(request.param)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from threads, and OpenMP waits cost ~15 ms each on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
