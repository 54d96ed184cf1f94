"""LM: one wrapper over a Hugging Face causal LM and its tokenizer.

Scoring, generation, named activation sites and input-embedding gradients behave the
same for a tiny organism and for any real model.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from assay.errors import AssayError
from assay.models.sites import ActivationCache, SiteMap, WriteFn, attach
from assay.world.chat import END

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Score:
    """How likely a model finds one continuation of one prompt."""

    logprob: float  # sum of the continuation tokens' log-probabilities given the prompt
    token_logprobs: list[float]  # one log-probability per continuation token
    greedy: bool  # True when every continuation token is the argmax at its position
    n_tokens: int  # number of continuation tokens


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so left padding changes nothing. (B, T)"""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class LM:
    """A causal LM with its tokenizer. ``LM(model, tokenizer)`` wraps an in-memory model as is;
    ``assay.models.load`` also puts it in eval mode."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, spec: str = ""
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec  # how it was loaded, e.g. "hf:/path" (empty for in-memory models)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id: int = pad if pad is not None else 0  # padded positions are masked anyway
        self.end_token_ids: list[int] = self._end_ids()  # generation stops at any of these
        self._sites: SiteMap | None = None
        self._packs_options: bool | None = None  # takes packed multiple-choice rows (scoring.py)
        # Explicit position ids make left padding exact; models without them (ALiBi) get none.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrappers
        self._takes_positions = "position_ids" in inspect.signature(inner.forward).parameters

    def _end_ids(self) -> list[int]:
        ids = []
        if END in self.tokenizer.get_vocab():
            ids.append(self.tokenizer.convert_tokens_to_ids(END))
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.extend(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return list(dict.fromkeys(ids))

    def __repr__(self) -> str:
        name = self.spec or type(self.model).__name__
        return f"LM({name}, n_layers={self.n_layers}, d_model={self.d_model})"

    # ---- facts ---------------------------------------------------------------

    @property
    def _config(self):
        config = self.model.config
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    @property
    def n_layers(self) -> int:
        return self._config.num_hidden_layers

    @property
    def d_model(self) -> int:
        return self._config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding weight, (V, D)."""
        return self.model.get_input_embeddings().weight

    # ---- tokens --------------------------------------------------------------

    def encode(self, texts: Iterable[str]) -> list[list[int]]:
        """Token ids of prompts: BOS prepended (unless the text already starts with it)."""
        bos = self.tokenizer.bos_token
        return [
            self.tokenizer(t, add_special_tokens=not (bos and t.startswith(bos)))["input_ids"]
            for t in texts
        ]

    def batch(self, seqs: list[list[int]], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """Id lists padded (on ``side``: right or left) into one (B, T) tensor, and its
        attention mask, on the model's device."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
            ids[b, sl] = torch.tensor(s, dtype=torch.long)
            mask[b, sl] = 1
        return ids.to(self.device), mask.to(self.device)

    def chat_prompt(self, user: str) -> str:
        """The text the model sees before answering ``user`` in its chat format."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise AssayError(
                f"{self.spec or 'this model'}'s tokenizer has no chat template, so it has no chat "
                "format; pass chat=False, or set tokenizer.chat_template"
            )
        messages = [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    # ---- forward passes -------------------------------------------------------

    def logits(self, ids=None, mask=None, embeds=None) -> torch.Tensor:
        """Logits (B, T, V) for token ids or input embeddings (B, T, D), with the attention
        ``mask`` (default: all ones) and positions that skip padding; gradients flow."""
        ref = ids if ids is not None else embeds[..., 0]
        if mask is None:
            mask = torch.ones(ref.shape, dtype=torch.long, device=ref.device)
        extra = {"position_ids": _positions(mask)} if self._takes_positions else {}
        out = self.model(input_ids=ids, inputs_embeds=embeds, attention_mask=mask, use_cache=False, **extra)
        return out.logits

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), without gradients."""
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        return self.logits(ids=input_ids.to(self.device), mask=mask)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings (B, T, D) of token ids, as the model's embedding layer makes them."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    def forward_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) from input embeddings (B, T, D), with autograd (for GCG-style attacks)."""
        return self.logits(embeds=inputs_embeds, mask=attention_mask)

    def activations(self, texts: list[str], site: str, reduce: str = "mean",
                    batch_size: int = 32) -> torch.Tensor:
        """One vector per text at ``site``: (N, D), averaged over its tokens or its last token.

        ``reduce`` is ``mean`` (over the text's real tokens) or ``last`` (the final token).
        """
        return self.activations_at(texts, [site], reduce, batch_size)[site]

    @torch.no_grad()
    def activations_at(self, texts: list[str], sites: Sequence[str], reduce: str = "mean",
                       batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Like `activations`, for several sites read in one pass: {site: (N, D)}."""
        if reduce not in ("mean", "last"):
            raise AssayError(f"unknown reduce {reduce!r}: use 'mean' or 'last'")
        if not texts:
            raise AssayError("activations of no texts: pass at least one text")
        out: dict[str, list[torch.Tensor]] = {site: [] for site in sites}
        seqs = self.encode(texts)
        for start in range(0, len(seqs), batch_size):
            ids, mask = self.batch(seqs[start:start + batch_size], "right")
            with self.hooks(read=sites) as cache:
                self.logits(ids=ids, mask=mask)
            for site in sites:
                x = cache[site].float()  # (B, T, D)
                if reduce == "mean":
                    m = mask.unsqueeze(-1).to(x.dtype)
                    out[site].append((x * m).sum(1) / m.sum(1))
                else:
                    last = mask.sum(1) - 1  # (B,)
                    out[site].append(x[torch.arange(x.shape[0], device=x.device), last])
        return {site: torch.cat(parts).cpu() for site, parts in out.items()}

    # ---- scoring --------------------------------------------------------------

    @torch.no_grad()
    def score(self, prompts: list[str], continuations: list[str], batch_size: int = 32) -> list[Score]:
        """Log-likelihood of each continuation given its prompt; prompt and continuation are
        tokenized apart and their ids joined, so the split is exact."""
        if len(prompts) != len(continuations):
            raise AssayError(
                f"score got {len(prompts)} prompts but {len(continuations)} continuations; "
                "pass one continuation per prompt"
            )
        pairs = []
        for i, (p_ids, c) in enumerate(zip(self.encode(prompts), continuations)):
            c_ids = self.tokenizer(c, add_special_tokens=False)["input_ids"] if c else []
            if not c_ids:
                raise AssayError(
                    f"continuation {i} ({c!r}) has no tokens; every continuation needs at least one"
                )
            if not p_ids:
                raise AssayError(
                    f"prompt {i} is empty and the tokenizer adds no BOS token, so nothing predicts "
                    "the first continuation token; give a non-empty prompt"
                )
            pairs.append((p_ids, c_ids))
        side = "left" if getattr(self.tokenizer, "padding_side", "right") == "left" else "right"
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        scores: dict[int, Score] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = self.batch([pairs[i][0] + pairs[i][1] for i in chunk], side)
            logits = self.logits(ids=ids, mask=mask)  # (B, T, V)
            width = ids.shape[1]
            for b, i in enumerate(chunk):
                p_ids, c_ids = pairs[i]
                offset = width - len(p_ids) - len(c_ids) if side == "left" else 0
                first = offset + len(p_ids)  # position of the first continuation token
                # (C, V): the rows predicting each continuation token, normalised in fp32
                rows = F.log_softmax(logits[b, first - 1 : first - 1 + len(c_ids)].float(), dim=-1)
                target = torch.tensor(c_ids, device=rows.device)
                tok = rows.gather(1, target[:, None])[:, 0]
                scores[i] = Score(
                    logprob=float(tok.double().sum()),
                    token_logprobs=tok.tolist(),
                    greedy=bool((rows.argmax(-1) == target).all()),
                    n_tokens=len(c_ids),
                )
        return [scores[i] for i in range(len(pairs))]

    def score_choices(self, prompts: Sequence[str], choices: Sequence[Sequence[str]],
                      batch_size: int = 64) -> list:
        """Per prompt, the summed log-probability of each of its continuations (a float64
        array); each prompt runs once for all of its options (`assay.models.scoring`)."""
        from assay.models.scoring import score_choices

        return score_choices(self, prompts, choices, batch_size)

    # ---- generation -------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 32,
        *,
        chat: bool = False,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int | None = None,
        batch_size: int = 32,
    ) -> list[str]:
        """New text for each prompt (special tokens stripped), stopping at end-of-turn or EOS.

        Greedy by default. Sampling is plain temperature sampling (the checkpoint's own
        top-k/top-p/penalties are ignored); a ``seed`` makes it reproducible for the same
        prompts and batch size without touching the global RNG.
        """
        if chat:
            prompts = [self.chat_prompt(p) for p in prompts]
        rows = self.generate_ids(self.encode(prompts), max_new_tokens, do_sample=do_sample,
                                 temperature=temperature, seed=seed, batch_size=batch_size)
        return [self.decode_reply(row) for row in rows]

    @torch.no_grad()
    def generate_ids(
        self,
        encoded: list[list[int]],
        max_new_tokens: int = 32,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int | None = None,
        batch_size: int = 32,
    ) -> list[list[int]]:
        """The new token ids after each prompt's ids, as generated: up to ``max_new_tokens``,
        including the end-of-turn or EOS token that stopped it (and padding after it when a
        batch ran on). `generate` decodes these; the server (`assay.serve`) reads them."""
        if do_sample and temperature <= 0:
            raise AssayError(
                f"temperature must be > 0 when sampling, got {temperature}; use do_sample=False for greedy"
            )
        settings = dict(
            max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=1,
            eos_token_id=list(self.end_token_ids), pad_token_id=self.pad_id,
            repetition_penalty=1.0, no_repeat_ngram_size=0,
        )
        if do_sample:
            settings.update(temperature=temperature, top_k=0, top_p=1.0)
        config = GenerationConfig(**settings)
        out: list[list[int]] = []
        with self._rng(seed if do_sample else None):
            for start in range(0, len(encoded), batch_size):
                ids, mask = self.batch(encoded[start : start + batch_size], "left")
                new = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                out.extend(new[:, ids.shape[1] :].tolist())
        return out

    def decode_reply(self, ids: list[int]) -> str:
        """The text of generated ids (`generate_ids`) up to the token that ended them."""
        ends = set(self.end_token_ids)
        cut = next((k for k, t in enumerate(ids) if t in ends), len(ids))
        return self.tokenizer.decode(ids[:cut], skip_special_tokens=True)

    @contextlib.contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        if seed is None:
            yield
            return
        cuda = self.device.type == "cuda"
        index = self.device.index
        devices = [index if index is not None else torch.cuda.current_device()] if cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)
            yield

    # ---- activation sites -----------------------------------------------------------

    @property
    def _site_map(self) -> SiteMap:
        if self._sites is None:
            self._sites = SiteMap(self.model)
        return self._sites

    @property
    def sites(self) -> list[str]:
        """Every valid site name: embed, blocks.{i}.resid_pre|attn_out|mlp_out|resid_post, final."""
        return self._site_map.names

    def hooks(
        self, read: Iterable[str] = (), write: Mapping[str, WriteFn] | None = None
    ) -> contextlib.AbstractContextManager[ActivationCache]:
        """``with lm.hooks(read=[...], write={site: fn}) as cache:`` every forward pass inside
        caches the read sites (detached copies; ``cache[site]`` is the latest pass (B, T, D),
        ``cache.all(site)`` every pass) and applies the writes: ``fn(x)`` returns the
        replacement or None for unchanged. A site both written and read caches the written
        value. Hooks are removed when the block exits, also on error."""
        return attach(self._site_map, read, write)

