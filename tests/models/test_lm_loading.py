"""load(spec): hf folders, pickle refusal, corrupt weights, organisms, unknown schemes."""

from __future__ import annotations

import shutil

import pytest
import torch
import transformers

from assay.errors import AssayError
from assay.models import LM, check_spec, load

IDS = torch.tensor([[1, 40, 41, 50, 60, 70]])


def copy_without_weights(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, dst / f.name)
    return dst


def test_loaded_model_facts(llama, llama_dir):
    assert isinstance(llama, LM)
    assert llama.spec == f"hf:{llama_dir}"
    assert not llama.model.training
    assert llama.device == torch.device("cpu")
    assert llama.model.dtype == torch.float32
    assert llama.n_params == sum(p.numel() for p in llama.model.parameters()) > 10_000
    assert llama.tokenizer.convert_tokens_to_ids("<|end|>") in llama.end_token_ids


def test_missing_folder():
    with pytest.raises(AssayError) as err:
        load("hf:/no/such/dir")
    assert str(err.value) == (
        "hf:/no/such/dir: no such folder; give a local folder made by save_pretrained or a hub id"
    )


def test_folder_without_config(tmp_path):
    with pytest.raises(AssayError, match="no config.json"):
        load(f"hf:{tmp_path}")


def test_pickle_only_folder_is_refused_unless_allowed(llama, llama_dir, tmp_path):
    folder = copy_without_weights(llama_dir, tmp_path / "pickled")
    torch.save(llama.model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(AssayError) as err:
        load(f"hf:{folder}")
    msg = str(err.value)
    assert "pickle" in msg and "pytorch_model.bin" in msg and "allow_pickle=True" in msg
    assert "\n" not in msg
    lm = load(f"hf:{folder}", allow_pickle=True)
    assert torch.equal(lm.forward(IDS), llama.forward(IDS))


def test_corrupt_safetensors_is_an_assay_error(llama_dir, tmp_path):
    folder = copy_without_weights(llama_dir, tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    with pytest.raises(AssayError, match="not a readable safetensors file"):
        load(f"hf:{folder}")


def test_truncated_weights_or_a_missing_tokenizer_are_refused_before_loading(llama_dir, tmp_path):
    from assay.models import check_spec

    folder = copy_without_weights(llama_dir, tmp_path / "cut")
    whole = (llama_dir / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(whole[: len(whole) - 1000])  # a copy cut short
    with pytest.raises(AssayError, match="model.safetensors is truncated"):
        check_spec(f"hf:{folder}")  # what planning calls: no weights are loaded
    (folder / "model.safetensors").write_bytes(whole)
    assert check_spec(f"hf:{folder}")
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(AssayError, match="has no tokenizer"):
        check_spec(f"hf:{folder}")


def test_folder_without_weights(llama_dir, tmp_path):
    folder = copy_without_weights(llama_dir, tmp_path / "empty")
    with pytest.raises(AssayError, match="holds no weights"):
        load(f"hf:{folder}")


def test_hub_ids_go_to_from_pretrained_safely(monkeypatch):
    seen = {}

    def fake(name, **kwargs):
        seen.update(kwargs, name=name)
        raise OSError("we could not connect to the hub")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(AssayError, match="hf:some-org/some-model: could not load the model .OSError"):
        load("hf:some-org/some-model")
    assert seen["name"] == "some-org/some-model"
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


@pytest.mark.parametrize("spec", ["foo:bar", "nocolon", "hf:"])
def test_unknown_scheme(spec):
    with pytest.raises(AssayError) as err:
        load(spec)
    assert "organism:NAME" in str(err.value) and "hf:PATH_OR_ID" in str(err.value)


def test_organism_specs_resolve_through_the_registered_scheme(llama, llama_dir, monkeypatch):
    from assay.models import Scheme, load_folder
    from assay.models import spec as specs

    def load_organism(spec, **kwargs):
        if spec.name != "xs":
            raise AssayError(f"unknown organism '{spec.name}'")
        return load_folder(llama_dir, str(spec), **kwargs)

    monkeypatch.setitem(specs._SCHEMES, "organism",
                        Scheme(load=load_organism, key=lambda spec: f"{spec}#fake"))
    lm = load("organism:xs")
    assert lm.spec == "organism:xs"
    assert torch.equal(lm.forward(IDS), llama.forward(IDS))
    assert check_spec("organism:xs@pretrain") == "organism:xs@pretrain#fake"
    with pytest.raises(AssayError, match="unknown organism 'zz'"):
        load("organism:zz")
    monkeypatch.delitem(specs._SCHEMES, "organism")  # as before assay.training is imported
    with pytest.raises(AssayError, match="registered by assay.training"):
        load("organism:xs")


def test_bad_dtype(llama_dir):
    with pytest.raises(AssayError, match="unknown dtype 'float33'"):
        load(f"hf:{llama_dir}", dtype="float33")
    assert load(f"hf:{llama_dir}", dtype="float64").model.dtype == torch.float64


def test_a_hub_id_is_checked_in_planning_with_one_request(monkeypatch):
    """A hub id that is neither cached nor reachable is refused at once (not after a minute
    of retries inside the first unit); each hub answer gets its own fix."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError

    from assay.models import check_spec

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AssayError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                         "is set: download it .*hf download assay-test/absent"):
        check_spec("hf:assay-test/absent")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(url, timeout=None, **kwargs):
        calls.append(timeout)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    with pytest.raises(AssayError, match=r"not cached here and the hub cannot be reached "
                                         r"\(ConnectionError: Name or service not known\)"):
        check_spec("hf:assay-test/absent")
    assert calls == [5.0], "one request with a short time-out, no retries"

    def missing(url, **kwargs):
        err = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # as the hub's 404 is
        Exception.__init__(err, "404 Client Error")
        raise err

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", missing)
    with pytest.raises(AssayError, match="no model 'assay-test/absent' on the hub"):
        check_spec("hf:assay-test/absent")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kw: object())
    assert check_spec("hf:assay-test/present") == "hf:assay-test/present"
    with pytest.raises(AssayError, match="is not a hub id"):
        check_spec("hf:not a hub id!")
