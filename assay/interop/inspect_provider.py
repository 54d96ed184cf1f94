"""An Inspect model provider over assay's models: ``inspect eval TASK --model assay/SPEC``.

SPEC is any model spec assay loads (``organism:s``, ``hf:/path/to/folder``). Inspect finds
the provider through the ``inspect_ai`` entry point in assay's package metadata, which
imports this module; ``@modelapi("assay")`` registers it.

Replies come from the same code as ``assay serve``'s ``/v1/chat/completions``
(`assay.serve.app.chat`), run in process on a batching `Engine`: messages in the model's
chat template, tools mapped onto the organisms' call protocol, and the same text for the same
request. So an Inspect run against ``assay/organism:s`` and one against ``assay serve
organism:s`` through Inspect's OpenAI-compatible provider score alike.

Model arguments (``-M key=value``): ``max_batch`` (prompts per batch, default 32) and
``allow_pickle`` (default false).
"""

from __future__ import annotations

import json
from typing import Any

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    modelapi,
)
from inspect_ai.tool import ToolCall, ToolChoice, ToolInfo

from assay.errors import AssayError
from assay.serve.app import ApiError, ChatBody, chat
from assay.serve.engine import Engine

__all__ = ["AssayAPI"]

_STOP = {"stop": "stop", "length": "max_tokens", "tool_calls": "tool_calls"}


@modelapi(name="assay")
class AssayAPI(ModelAPI):
    """``assay/SPEC``: the model assay loads from SPEC, generating in this process."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), max_batch: int = 32,
                 allow_pickle: bool = False, **model_args: Any) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        if model_args:
            raise AssayError(f"unknown model argument(s) {', '.join(sorted(model_args))} for "
                             "assay/: use max_batch or allow_pickle")
        self.lm = _load(model_name, _flag(allow_pickle))
        self.engine = Engine(self.lm, max_queue=1 << 20, max_batch=int(max_batch))
        self.engine.start()

    def close(self) -> None:
        self.engine.stop()

    def max_connections(self) -> int:
        return self.engine.max_batch  # enough requests in flight to fill a batch

    def connection_key(self) -> str:
        return f"assay:{self.model_name}"

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo],
                       tool_choice: ToolChoice, config: GenerateConfig) -> ModelOutput:
        request = _request(self.model_name, input, tools, tool_choice, config)
        try:
            reply = await chat(self.engine, ChatBody.model_validate(request))
        except ApiError as bad:  # the same message the server would send, raised in Inspect
            raise AssayError(f"assay/{self.model_name}: {bad.message}") from None
        choice = reply["choices"][0]
        message = choice["message"]
        calls = [ToolCall(id=c["id"], function=c["function"]["name"],
                          arguments=json.loads(c["function"]["arguments"]))
                 for c in message.get("tool_calls") or []]
        usage = reply["usage"]
        return ModelOutput(
            model=self.model_name,
            choices=[ChatCompletionChoice(
                message=ChatMessageAssistant(content=message["content"] or "",
                                             tool_calls=calls or None, model=self.model_name,
                                             source="generate"),
                stop_reason=_STOP.get(choice["finish_reason"], "unknown"))],
            usage=ModelUsage(input_tokens=usage["prompt_tokens"],
                             output_tokens=usage["completion_tokens"],
                             total_tokens=usage["total_tokens"]))


_LOADED: dict[tuple[str, bool], Any] = {}  # Inspect builds a provider more than once per run


def _load(spec: str, allow_pickle: bool):
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.models import load

    if (spec, allow_pickle) not in _LOADED:
        _LOADED[spec, allow_pickle] = load(spec, allow_pickle=allow_pickle)
    return _LOADED[spec, allow_pickle]


def _request(model: str, input: list[ChatMessage], tools: list[ToolInfo],
             tool_choice: ToolChoice, config: GenerateConfig) -> dict:
    """The chat-completions request Inspect's OpenAI-compatible provider would send."""
    messages = []
    for m in input:
        entry: dict[str, Any] = {"role": m.role, "content": m.text}
        if m.role == "assistant" and m.tool_calls:
            entry["content"] = m.text or None
            entry["tool_calls"] = [{"id": c.id, "type": "function",
                                    "function": {"name": c.function,
                                                 "arguments": json.dumps(c.arguments)}}
                                   for c in m.tool_calls]
        if m.role == "tool":
            entry["tool_call_id"] = m.tool_call_id
        messages.append(entry)
    request: dict[str, Any] = {"model": model, "messages": messages}
    if config.max_tokens is not None:
        request["max_tokens"] = config.max_tokens
    if config.temperature is not None:
        request["temperature"] = config.temperature
    if config.seed is not None:
        request["seed"] = config.seed
    if config.stop_seqs:
        request["stop"] = config.stop_seqs
    if tools:
        request["tools"] = [{"type": "function", "function": {"name": t.name}} for t in tools]
        if not isinstance(tool_choice, str) or tool_choice == "any":
            raise AssayError("assay's models decide themselves whether to call a tool: use "
                             "tool_choice 'auto' or 'none'")
        request["tool_choice"] = tool_choice
    return request


def _flag(value: Any) -> bool:
    """``-M allow_pickle=true`` arrives as a bool or as the string 'true'."""
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
