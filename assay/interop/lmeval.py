"""An lm-evaluation-harness model over assay's wrapper: ``--model assay``, no server.

    lm_eval run --model assay --model_args model=organism:s --batch_size 32 --tasks ...

``model`` is any spec assay loads. Requests are answered by assay's own code:

- ``loglikelihood``: `LM.score`, which tokenizes context and continuation apart and joins
  the ids (the log-likelihoods `assay.methods.evaluation.score_items` gives, option by
  option);
- ``loglikelihood_rolling``: lm-eval's rolling windows over the text's tokens, scored by
  `assay.serve.engine.Engine.score` (the first window conditions on BOS, or EOS when the
  tokenizer has no BOS);
- ``generate_until``: greedy `LM.generate_ids` (or sampled, when the task asks for
  ``do_sample`` with a ``temperature``), cut at the first ``until`` string.

The class is declared under the ``lm_eval.models`` entry-point group, which lm-eval reads
from its plugin release on. lm_eval 0.4.13 does not read it: ``assay-lm-eval`` (`main`) loads
that entry point into lm-eval's registry and then runs lm-eval's own command line.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

from lm_eval.api.model import LM as HarnessLM
from lm_eval.api.registry import model_registry
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from assay.errors import AssayError

__all__ = ["AssayLM", "main", "register"]

GROUP = "lm_eval.models"  # the entry-point group lm-eval's plugin loader reads


class AssayLM(HarnessLM):
    """``model_args``: ``model`` (an assay spec), ``max_length``
    (defaults to the model's context) and ``allow_pickle``; lm-eval's ``--batch_size`` (default
    32; "auto" means 32)."""

    def __init__(self, model: str | None = None, batch_size: int | str = 32,
                 max_length: int | None = None, allow_pickle: bool | str = False,
                 **ignored: Any) -> None:
        super().__init__()
        if not model:
            raise AssayError("--model assay needs a model spec: --model_args model=organism:s "
                             "(or model=hf:/path/to/folder)")
        unknown = sorted(set(ignored) - {"device", "max_batch_size"})  # lm-eval passes these
        if unknown:
            raise AssayError(f"unknown model argument(s) {', '.join(unknown)} for --model "
                             "assay: use model, batch_size, max_length or allow_pickle")
        import assay.training  # noqa: F401  (registers the organism: scheme)
        from assay.models import load
        from assay.serve.app import context_length
        from assay.serve.engine import Engine

        self.lm = load(model, allow_pickle=str(allow_pickle).lower() in ("1", "true", "yes"))
        self.spec = model
        self.batch_size = 32 if str(batch_size).startswith("auto") else int(batch_size)
        self.max_length = int(max_length) if max_length else context_length(self.lm)
        self._engine = Engine(self.lm, max_batch=self.batch_size)  # its scorer, no thread

    @property
    def tokenizer_name(self) -> str:
        return self.spec.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.lm.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        return self.lm.tokenizer.apply_chat_template(
            chat_history, add_generation_prompt=add_generation_prompt, tokenize=False)

    # ---- requests ------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        contexts = [r.args[0] for r in requests]
        continuations = [r.args[1] for r in requests]
        scores = self.lm.score(contexts, continuations, batch_size=self.batch_size)
        out = []
        for request, s in zip(requests, scores):
            result = (s.logprob, s.greedy)
            self.cache_hook.add_partial("loglikelihood", request.args, result)
            out.append(result)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        tok = self.lm.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if prefix is None:
            raise AssayError(f"{self.spec}: the tokenizer has neither BOS nor EOS, so nothing "
                             "can condition the first token of a rolling log-likelihood")
        out = []
        for request in requests:
            ids = tok(request.args[0], add_special_tokens=False)["input_ids"]
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                ids, prefix_token=prefix, max_seq_len=self.max_length, context_len=1)]
            total = 0.0
            for start in range(0, len(windows), self.batch_size):
                chunk = windows[start:start + self.batch_size]
                scored = self._engine.score([ctx + cont for ctx, cont in chunk])
                for (ctx, _), s in zip(chunk, scored):
                    total += sum(s.token_logprobs[len(ctx):])
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in requests:
            context, kwargs = request.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", 256))
            temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
            sample = bool(kwargs.pop("do_sample", False)) and temperature > 0
            ids = self.lm.encode([context])[0][-max(1, self.max_length - max_new):]
            (row,) = self.lm.generate_ids([ids], max_new, do_sample=sample,
                                          temperature=temperature if sample else 1.0,
                                          seed=kwargs.pop("seed", None) if sample else None)
            text = self.lm.decode_reply(row)
            cuts = [text.find(s) for s in until if s and s in text]
            text = text[:min(cuts)] if cuts else text
            self.cache_hook.add_partial("generate_until", request.args, text)
            out.append(text)
        return out


def register() -> list[str]:
    """Load every ``lm_eval.models`` entry point (assay's among them) into lm-eval's model
    registry, as lm-eval's plugin loader does; returns the names added."""
    import lm_eval.models  # noqa: F401  (lm-eval's own models first: it imports them only
    # while its registry is empty, so registering ours first would hide them)

    added = []
    for ep in entry_points(group=GROUP):
        if ep.name not in model_registry:
            model_registry.register(ep.name, target=ep)
            added.append(ep.name)
    if "assay" not in model_registry:
        raise AssayError("no 'assay' entry point in group lm_eval.models: reinstall assay "
                         "(pip install -e .) so its package metadata is current")
    return added


def main(argv: list[str] | None = None) -> None:
    """``assay-lm-eval ARGS``: lm-eval's command line with ``--model assay`` registered."""
    from lm_eval.__main__ import cli_evaluate

    register()
    if argv is not None:
        sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except AssayError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
