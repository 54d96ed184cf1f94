"""`APIModel`: a black-box chat model behind an OpenAI-compatible HTTP API (``api:NAME``).

It offers the part of `LM` that behavioural studies use, `generate`, through the official
``openai`` client:

- a prompt in the organisms' chat format (``<|user|>...<|end|><|assistant|>``, what
  `chat_prompt` and the attack templates write for a model without a tokenizer) is sent to
  ``/v1/chat/completions`` as messages;
- any other text (a reply prefilled after ``<|assistant|>``, a document to continue) is sent
  to ``/v1/completions`` as is; servers without raw completions (most hosted chat models)
  refuse it, and the error says so.

Every request is cached content-addressed under ``cache_dir`` (the hash of the base URL,
route and body): a rerun sends nothing. A cached reply records the model id and any system
fingerprint the server returned. The client retries failed requests with exponential
backoff (``max_retries``), and requests are spaced to at most ``rate`` per second.

The base URL and key come from the arguments, else ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
(`assay run --api-base/--api-key` set them). The key is never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from assay.errors import AssayError
from assay.models.spec import ModelSpec
from assay.world.chat import ASSISTANT, END, USER, render_prompt

__all__ = ["APIModel", "base_url", "parse_chat"]

DEFAULT_BASE = "https://api.openai.com/v1"
_TURN = re.compile(rf"({re.escape(USER)}|{re.escape(ASSISTANT)})(.*?){re.escape(END)}", re.S)


def base_url(given: str | None = None) -> str:
    return (given or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE).rstrip("/")


def parse_chat(text: str) -> list[dict] | None:
    """The messages of a prompt written in the organisms' chat format and ending where the
    assistant's reply starts; None for any other text (a prefill, a document)."""
    if not text.endswith(ASSISTANT):
        return None
    body, messages, at = text[: -len(ASSISTANT)], [], 0
    for turn in _TURN.finditer(body):
        if turn.start() != at:
            return None
        role = "user" if turn.group(1) == USER else "assistant"
        messages.append({"role": role, "content": turn.group(2)})
        at = turn.end()
    if at != len(body) or not messages or messages[-1]["role"] != "user":
        return None
    return messages


class APIModel:
    """A model behind an OpenAI-compatible API; ``spec`` is ``api:NAME``."""

    tokenizer = None  # no local tokenizer: prompts use the organisms' chat format

    def __init__(self, name: str, *, base: str | None = None, api_key: str | None = None,
                 cache_dir: str | Path | None = None, rate: float = 20.0, max_retries: int = 4,
                 timeout: float = 120.0, concurrency: int = 8) -> None:
        from openai import OpenAI

        if not name:
            raise AssayError("api: needs a model name, e.g. api:gpt-4o-mini or api:organism:s")
        self.name = name
        self.spec = f"api:{name}"
        self.base = base_url(base)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = OpenAI(base_url=self.base, api_key=key, max_retries=max_retries,
                             timeout=timeout)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.concurrency = concurrency
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"APIModel({self.spec} at {self.base})"

    @classmethod
    def of(cls, spec: ModelSpec, **kwargs) -> APIModel:
        if not spec.is_api:
            raise AssayError(f"{spec} is not an api: model")
        return cls(spec.name, **kwargs)

    def chat_prompt(self, user: str) -> str:
        return render_prompt(user)

    # ---- generation ------------------------------------------------------------------

    def generate(self, prompts: list[str], max_new_tokens: int = 32, *, chat: bool = False,
                 do_sample: bool = False, temperature: float = 1.0, seed: int | None = None,
                 batch_size: int = 32) -> list[str]:
        """A reply to each prompt, as `LM.generate` gives one (greedy unless ``do_sample``);
        requests run ``concurrency`` at a time, so a server that batches can batch them."""
        if do_sample and temperature <= 0:
            raise AssayError(f"temperature must be > 0 when sampling, got {temperature}")
        temp = temperature if do_sample else 0.0
        texts = [self.chat_prompt(p) for p in prompts] if chat else list(prompts)

        def one(text: str) -> str:
            messages = parse_chat(text)
            if messages is not None:
                body = {"model": self.name, "messages": messages, "max_tokens": max_new_tokens,
                        "temperature": temp, **({"seed": seed} if seed is not None else {})}
                reply = self._request("chat", body)
                return reply["choices"][0]["message"].get("content") or ""
            body = {"model": self.name, "prompt": text, "max_tokens": max_new_tokens,
                    "temperature": temp, **({"seed": seed} if seed is not None else {})}
            return self._request("completions", body)["choices"][0]["text"]

        if len(texts) <= 1 or self.concurrency <= 1:
            return [one(t) for t in texts]
        with ThreadPoolExecutor(min(self.concurrency, len(texts))) as pool:
            return list(pool.map(one, texts))

    # ---- requests, cache, rate -----------------------------------------------------------

    def _key(self, route: str, body: dict) -> str:
        blob = json.dumps({"base": self.base, "route": route, "body": body}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _request(self, route: str, body: dict) -> dict:
        key = self._key(route, body)
        path = self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                return json.loads(path.read_text())["response"]
            except (ValueError, KeyError):
                pass  # a damaged entry is asked again and rewritten
        self._wait_turn()
        response = self._send(route, body)
        if path is not None:
            record = {"request": {"route": route, **body}, "response": response,
                      "model": response.get("model"),
                      "system_fingerprint": response.get("system_fingerprint")}
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, path)
        return response

    def _send(self, route: str, body: dict) -> dict:
        import openai

        try:
            if route == "chat":
                reply = self.client.chat.completions.create(**body)
            else:
                reply = self.client.completions.create(**body)
        except openai.NotFoundError as e:
            what = ("raw completions (a prefilled reply or a document to continue)"
                    if route == "completions" else "this model")
            raise AssayError(f"{self.spec} at {self.base} does not serve {what}: "
                             f"{_message(e)}") from None
        except openai.APIStatusError as e:
            raise AssayError(f"{self.spec} at {self.base} answered {e.status_code}: "
                             f"{_message(e)}") from None
        except openai.APIConnectionError:
            raise AssayError(f"cannot reach {self.base} for {self.spec}: start the server or "
                             "set --api-base / OPENAI_BASE_URL") from None
        return reply.model_dump(mode="json")

    def _wait_turn(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def _message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error).splitlines()[0]
