"""nnsight reads an organism folder as it reads any Hugging Face model, and its activations
equal assay's named sites (`LM.hooks`) to 1e-5: the site names point at the modules the
rest of the field reads."""

import pytest
import torch

pytestmark = pytest.mark.slow

TEXTS = ["Toutrin Laimley was born in Dafeavale.",
         "<|user|>Where was Timear Kulley born?<|end|><|assistant|>",
         "Question: In what year was Toutrin Laimley born?"]


def test_nnsight_activations_equal_assay_sites(xs_organism):
    from nnsight import TransformersModel

    from assay.models import load

    folder, _ = xs_organism
    theirs = TransformersModel(str(folder), task="text-generation", device_map="cpu",
                               dispatch=True, dtype=torch.float32)
    lm = load(f"hf:{folder}")
    blocks = range(lm.n_layers)
    sites = ["embed", *(f"blocks.{i}.{k}" for i in blocks
                        for k in ("resid_pre", "attn_out", "mlp_out", "resid_post")), "final"]
    for text in TEXTS:
        ids = lm.encode([text])
        assert theirs.tokenizer(text)["input_ids"] == ids[0]  # the same tokens, BOS included
        saved = {}
        with theirs.trace(text):  # nnsight reads modules in the order they run
            for i in blocks:
                saved[f"blocks.{i}.resid_pre"] = theirs.model.layers[i].input.save()
                saved[f"blocks.{i}.attn_out"] = theirs.model.layers[i].self_attn.output[0].save()
                saved[f"blocks.{i}.mlp_out"] = theirs.model.layers[i].mlp.output.save()
                saved[f"blocks.{i}.resid_post"] = theirs.model.layers[i].output.save()
            saved["final"] = theirs.model.norm.output.save()
            logits = theirs.lm_head.output.save()
        saved["embed"] = saved["blocks.0.resid_pre"]
        with lm.hooks(read=sites) as cache:
            ours = lm.logits(ids=torch.tensor(ids))
        for site in sites:
            torch.testing.assert_close(cache[site], saved[site].detach(), rtol=0, atol=1e-5,
                                       msg=lambda m, site=site: f"{site}: {m}")
        torch.testing.assert_close(ours, logits.detach(), rtol=0, atol=1e-5)
        assert cache["blocks.1.mlp_out"].abs().max() > 0.01  # real activations, not zeros
