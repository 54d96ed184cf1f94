import torch
from transformers import LlamaConfig, LlamaForCausalLM

from assay.training.data import IGNORE, PackedBatches, encode, encode_dialogue
from assay.training.tokenizer import train_tokenizer
from assay.training.trainer import TrainConfig, flops_per_token, lr_at, train
from assay.world import dialogues, documents


def _tokenizer(world):
    texts = [d.text for d in documents(world)] + [d.text for d in dialogues(world)]
    return train_tokenizer(texts, 400)


def test_dialogue_loss_covers_only_the_reply(world_xs):
    tok = _tokenizer(world_xs)
    ex = encode_dialogue(tok, "What is 12 + 30?", "42")
    taught = [i for i, m in zip(ex.ids, ex.loss_mask) if m]
    assert tok.decode(taught) == "42<|end|>"
    assert ex.ids[0] == tok.bos_token_id


def test_packing_keeps_examples_whole_and_is_seeded(world_xs):
    tok = _tokenizer(world_xs)
    examples = encode(tok, dialogues(world_xs, "qa", "train")[:200])
    make = lambda seed: PackedBatches([(examples, 1.0)], 4, 64, tok.pad_token_id, seed)  # noqa: E731
    a, b, c = make(1).take(3), make(1).take(3), make(2).take(3)
    assert all(torch.equal(x.ids, y.ids) and torch.equal(x.labels, y.labels) for x, y in zip(a, b))
    assert not all(torch.equal(x.ids, y.ids) for x, y in zip(a, c))
    end = tok.convert_tokens_to_ids("<|end|>")
    for batch in a:
        for row_ids, row_labels in zip(batch.ids.tolist(), batch.labels.tolist()):
            # every example starts with BOS and every dialogue closes before the pad
            assert row_ids[0] == tok.bos_token_id
            real = [t for t in row_ids if t != tok.pad_token_id]
            assert real[-1] == end
            assert real.count(tok.bos_token_id) == real.count(end) // 2
            taught = [t for t in row_labels if t != IGNORE]
            assert taught and taught.count(end) == real.count(end) // 2


def test_packed_rows_see_each_example_alone(world_xs):
    """Document masking: a packed row gives each example the logits it gets alone."""
    tok = _tokenizer(world_xs)
    examples = encode(tok, dialogues(world_xs, "copy", "train")[:50])
    batch = PackedBatches([(examples, 1.0)], 2, 64, tok.pad_token_id, seed=0).take(1)[0]
    model = _tiny(len(tok)).eval()
    with torch.no_grad():
        packed = model(**batch.model_inputs()).logits[0]
        starts = (batch.positions[0] == 0).nonzero().flatten().tolist() + [64]
        assert len(starts) >= 3  # two or more examples share the row
        for lo, hi in zip(starts, starts[1:]):
            alone = model(input_ids=batch.ids[:1, lo:hi]).logits[0]
            torch.testing.assert_close(packed[lo:hi], alone, atol=1e-5, rtol=1e-5)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0
    assert abs(lr_at(99, cfg) - 0.1) < 1e-3
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def _tiny(vocab):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=4, max_position_embeddings=128))


def test_trainer_is_deterministic_and_learns(world_xs):
    tok = _tokenizer(world_xs)
    examples = encode(tok, documents(world_xs)[:60])
    cfg = TrainConfig(steps=40, lr=3e-3, warmup=5, log_every=5)
    runs = []
    for _ in range(2):
        model = _tiny(len(tok))
        batches = PackedBatches([(examples, 1.0)], 8, 64, tok.pad_token_id, seed=0)
        curve = train(model, batches, cfg)
        runs.append((model.state_dict(), curve))
    (w1, c1), (w2, c2) = runs
    assert all(torch.equal(w1[k], w2[k]) for k in w1), "same seed must give identical weights"
    assert c1.loss == c2.loss
    assert c1.loss[0] - c1.loss[-1] > 1.0, f"loss did not fall: {c1.loss}"
    assert c1.tokens == 40 * 8 * 64


def test_flops_per_token_matches_a_hand_count():
    cfg = LlamaConfig(vocab_size=100, hidden_size=8, intermediate_size=16,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    # q,k,v,o: 4*8*8; MLP: 3*8*16; head: 8*100 -> 1440 MACs; attention 2*T*d = 160 at T=10
    assert flops_per_token(cfg, 10) == 3 * (2 * 1440 + 2 * 160)
