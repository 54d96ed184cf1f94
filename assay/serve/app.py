"""The OpenAI-compatible HTTP API over assay's models (FastAPI on uvicorn).

``build_app({model_id: LM})`` gives the ASGI app; `assay serve` runs it. Routes:

- ``GET /v1/models``;
- ``POST /v1/chat/completions``: messages rendered in the model's own chat template; tools
  mapped onto the organisms' tool-call protocol (`assay.agents.protocol`) where the model has
  a tool turn;
- ``POST /v1/completions``: a string, a list of token ids, or a list of either; ``echo`` with
  ``logprobs`` gives every prompt token's log-probability (the first is null), which is how
  lm-eval scores multiple choice.

Errors follow OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a
bad request (malformed JSON, a bad field, an unknown option), 401 for a missing or wrong key,
404 for an unknown model or route, 413 for a prompt longer than the model's context, 503 when
the queue is full. Nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from assay.agents.protocol import TOOL, MalformedCall, format_call, parse_call
from assay.errors import AssayError
from assay.models import LM
from assay.serve.engine import Busy, Engine, Generated, Scored, Work

__all__ = ["ApiError", "ChatBody", "build_app", "chat", "context_length", "run"]

MAX_TOP = 20  # the most alternatives per position a client may ask for


class ApiError(Exception):
    """An error answered to the client: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def _error(status: int, message: str, param: str | None = None,
           kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": None}}, status_code=status)


def context_length(lm: LM) -> int:
    """The longest sequence (prompt plus new tokens) the model takes."""
    config = lm._config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return 2048


# ---- request bodies ------------------------------------------------------------------------
# Fields OpenAI defines but this server does not use are accepted and ignored (extra="ignore"),
# so clients that send them still work; those whose meaning it cannot honour are refused.


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ApiError(400, "stop takes up to 4 non-empty strings", "stop")
        return stops

    def check(self) -> None:
        if self.stream:
            raise ApiError(400, "streaming is not supported: send stream=false", "stream")
        if self.n != 1:
            raise ApiError(400, f"n={self.n} is not supported: send one request per completion", "n")


class _Function(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = "{}"


class _ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = ""
    type: Literal["function"] = "function"
    function: _Function


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str = ""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise ApiError(400, "only text content parts are supported", "messages")
            return "".join(p.text for p in self.content)
        return self.content or ""


class _ToolSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: _Function | dict[str, Any]

    @property
    def name(self) -> str:
        f = self.function
        return f.name if isinstance(f, _Function) else str(f.get("name", ""))


class ChatBody(_Body):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP)
    tools: list[_ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None


class CompletionBody(_Body):
    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP)


# ---- the app --------------------------------------------------------------------------------


def build_app(models: dict[str, LM], *, api_key: str | None = None, max_queue: int = 256,
              max_batch: int = 32) -> FastAPI:
    """The API over ``models`` ({id clients name it by: LM}). With ``api_key``, every request
    must send ``Authorization: Bearer <api_key>``."""
    if not models:
        raise AssayError("serve needs at least one model")
    engines = {name: Engine(lm, max_queue=max_queue, max_batch=max_batch)
               for name, lm in models.items()}
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for engine in engines.values():
            engine.start()
        yield
        for engine in engines.values():  # uvicorn has let in-flight requests finish
            engine.stop()

    app = FastAPI(title="assay", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engines = engines

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.message, exc.param, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(400, _describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = (f"no route {request.method} {request.url.path}: use GET /v1/models, "
                   "POST /v1/chat/completions or POST /v1/completions"
                   if exc.status_code in (404, 405) else str(exc.detail))
        return _error(exc.status_code, message)

    if api_key is not None:
        app.add_middleware(_KeyCheck, key=api_key)

    def engine_of(name: str) -> Engine:
        if name not in engines:
            raise ApiError(404, f"unknown model {name!r}: this server serves "
                                f"{', '.join(engines)}", "model", "not_found_error")
        return engines[name]

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "assay"}
            for name in engines]}

    async def completions(request: Request) -> JSONResponse:
        body = await _parse(request, CompletionBody)
        body.check()
        engine = engine_of(body.model)
        lm = engine.lm
        prompts = _prompts(lm, body.prompt)
        stops = body.stops()
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        limit = context_length(lm)
        for ids in prompts:
            _fits(len(ids), max_tokens, limit)
        new: list[Generated] = ([Generated([], False)] * len(prompts) if max_tokens == 0 else
                                await run(engine, [Work("generate", ids, max_tokens=max_tokens,
                                                        temperature=body.temperature,
                                                        seed=body.seed) for ids in prompts]))
        texts, reasons, kept = [], [], []
        for gen in new:
            text, reason, ids = _finish(lm, gen, stops, max_tokens)
            texts.append(text)
            reasons.append(reason)
            kept.append(ids)
        logprobs: list[dict | None] = [None] * len(prompts)
        if body.logprobs is not None:
            seqs = [p + k for p, k in zip(prompts, kept)]
            scored = await run(engine, [Work("score", s, top=body.logprobs) for s in seqs])
            for i, (p, k, sc) in enumerate(zip(prompts, kept, scored)):
                start = 0 if body.echo else len(p)
                logprobs[i] = _legacy_logprobs(lm, p + k, sc, start)
        choices = []
        for i, (p, text, reason) in enumerate(zip(_as_list(body.prompt, len(prompts)),
                                                   texts, reasons)):
            shown = ((p if isinstance(p, str) else lm.tokenizer.decode(prompts[i])) + text
                     if body.echo else text)
            choices.append({"index": i, "text": shown, "logprobs": logprobs[i],
                            "finish_reason": reason})
        usage = _usage(sum(map(len, prompts)), sum(map(len, kept)))
        # a Response skips FastAPI's recursive encoder, a third of a millisecond per request
        return JSONResponse({"id": _id("cmpl"), "object": "text_completion",
                             "created": int(time.time()), "model": body.model,
                             "choices": choices, "usage": usage})

    async def chat_completions(request: Request) -> JSONResponse:
        body = await _parse(request, ChatBody)
        return JSONResponse(await chat(engine_of(body.model), body))

    # plain Starlette routes: the body is validated by pydantic's JSON parser in one step,
    # without FastAPI's per-request dependency machinery
    app.router.add_route("/v1/completions", completions, methods=["POST"])
    app.router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])

    return app


async def _parse(request: Request, model: type[BaseModel]):
    """The request body as ``model``, or a 400 that says what is wrong with it."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as bad:
        raise ApiError(400, _describe(bad.errors())) from None


class _KeyCheck:
    """ASGI middleware: a request without ``Authorization: Bearer KEY`` gets a 401."""

    def __init__(self, app, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            response = _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                   "with the key the server was started with",
                              kind="authentication_error")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# ---- chat, shared by the route and the in-process providers ----------------------------


async def run(engine: Engine, items: list[Work]) -> list:
    """Queue ``items`` on ``engine`` and wait for their results; a full queue is a 503."""
    try:
        futures = engine.submit(items)
    except Busy as busy:
        raise ApiError(503, str(busy), kind="server_error") from None
    return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))


async def chat(engine: Engine, body: ChatBody) -> dict:
    """The chat completion for ``body`` on ``engine``'s model, as the API returns it. The
    route serves it over HTTP; the Inspect provider (`assay.interop.inspect_provider`) calls it in
    process, so both give the same replies."""
    body.check()
    lm = engine.lm
    tools = _tool_names(lm, body)
    rendered = _render_chat(lm, body.messages)
    ids = lm.encode([rendered])[0]
    limit = context_length(lm)
    asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if len(ids) > limit:
        _fits(len(ids), 0, limit)
    max_tokens = limit - len(ids) if asked is None else asked
    _fits(len(ids), max_tokens, limit)
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs=true", "top_logprobs")
    gen = ((await run(engine, [Work("generate", ids, max_tokens=max_tokens,
                                    temperature=body.temperature, seed=body.seed)]))[0]
           if max_tokens else Generated([], False))
    text, reason, kept = _finish(lm, gen, body.stops(), max_tokens)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    call = _tool_call(text, tools)
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        reason = "tool_calls"
    logprobs = None
    if body.logprobs:
        (scored,) = await run(engine, [Work("score", ids + kept, top=body.top_logprobs or 0)])
        logprobs = {"content": _chat_logprobs(lm, ids + kept, scored, len(ids))}
    return {"id": _id("chatcmpl"), "object": "chat.completion",
            "created": int(time.time()), "model": body.model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": reason}],
            "usage": _usage(len(ids), len(kept))}


# ---- helpers --------------------------------------------------------------------------------


def _describe(errors) -> str:
    """One line from pydantic's validation errors: where, and what was wrong."""
    parts = []
    for e in errors[:3]:
        if e.get("type") == "json_invalid":
            return f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}"
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        if e.get("type") == "missing" and not where:
            return "the request has no JSON body: send a JSON object"
        parts.append(f"{where or 'body'}: {e.get('msg')}")
    return "bad request: " + "; ".join(parts)


def _fits(n_prompt: int, max_tokens: int, limit: int) -> None:
    if n_prompt > limit:
        raise ApiError(413, f"the prompt has {n_prompt} tokens, over the model's context of "
                            f"{limit}; shorten it", "prompt")
    if n_prompt + max_tokens > limit:
        raise ApiError(400, f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) "
                            f"exceeds the model's context of {limit}; lower max_tokens",
                       "max_tokens")


def _prompts(lm: LM, prompt) -> list[list[int]]:
    """Token ids of each prompt: text is encoded as `LM.encode` encodes (BOS first); id lists
    are taken as sent (lm-eval sends them with BOS when told add_bos_token=True)."""
    if isinstance(prompt, str):
        prompt = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    if not prompt:
        raise ApiError(400, "prompt is empty: send a string or a list of token ids", "prompt")
    vocab = len(lm.tokenizer)
    out = []
    for p in prompt:
        if isinstance(p, str):
            ids = lm.encode([p])[0]
        else:
            if any(not 0 <= t < vocab for t in p):
                raise ApiError(400, f"a token id is outside the vocabulary (0..{vocab - 1})",
                               "prompt")
            ids = list(p)
        if not ids:
            raise ApiError(400, "a prompt has no tokens: send text or at least one token id",
                           "prompt")
        out.append(ids)
    return out


def _as_list(prompt, n: int) -> list:
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return [prompt]
    return list(prompt)[:n]


def _finish(lm: LM, gen: Generated, stops: list[str], max_tokens: int
            ) -> tuple[str, str, list[int]]:
    """(text, finish reason, the token ids kept): the text is cut before the first stop string,
    and the ids with it, to the last token that ends before the cut. The end token that
    stopped generation is kept among the ids (its log-probability is reported, as lm-eval,
    which drops the last echoed entry, expects) but not in the text."""
    text = lm.tokenizer.decode(gen.ids, skip_special_tokens=True)
    reason = "stop" if gen.stopped else "length"
    cuts = [text.find(s) for s in stops if s in text]
    if not cuts:
        return text, reason, gen.ids
    cut = min(cuts)
    kept = []
    for k in range(len(gen.ids)):
        if len(lm.tokenizer.decode(gen.ids[: k + 1], skip_special_tokens=True)) > cut:
            break
        kept = gen.ids[: k + 1]
    return text[:cut], "stop", kept


def _token(lm: LM, token_id: int) -> str:
    """The text of one token (special tokens included), decoded once per model and id."""
    cache = lm.__dict__.setdefault("_serve_tokens", {})
    if token_id not in cache:
        cache[token_id] = lm.tokenizer.decode([token_id], skip_special_tokens=False)
    return cache[token_id]


def _legacy_logprobs(lm: LM, ids: list[int], scored: Scored, start: int) -> dict:
    """The completions API's logprobs from position ``start`` on: tokens, token_logprobs,
    top_logprobs (a dict per position, most likely first) and text_offset."""
    tokens = [_token(lm, t) for t in ids]
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    tops = []
    for entry in scored.top:
        if entry is None:
            tops.append(None)
            continue
        found: dict[str, float] = {}
        for tid, lp in entry:  # two ids can print alike: keep the likelier
            found.setdefault(_token(lm, tid), lp)
        tops.append(found)
    return {"tokens": tokens[start:], "token_logprobs": scored.token_logprobs[start:],
            "top_logprobs": tops[start:], "text_offset": offsets[start:]}


def _chat_logprobs(lm: LM, ids: list[int], scored: Scored, start: int) -> list[dict]:
    out = []
    for pos in range(start, len(ids)):
        token = _token(lm, ids[pos])
        out.append({"token": token, "logprob": scored.token_logprobs[pos],
                    "bytes": list(token.encode()),
                    "top_logprobs": [{"token": _token(lm, t), "logprob": lp,
                                      "bytes": list(_token(lm, t).encode())}
                                     for t, lp in (scored.top[pos] or [])]})
    return out


def _has_tool_turn(lm: LM) -> bool:
    return TOOL in lm.tokenizer.get_vocab()


def _tool_names(lm: LM, body: ChatBody) -> set[str]:
    """The tools a reply may call: none unless the request offers tools, the model has the
    tool-call protocol, and tool_choice allows calls."""
    if not body.tools and body.tool_choice in (None, "none", "auto"):
        return set()
    if body.tool_choice not in (None, "auto", "none"):
        raise ApiError(400, "tool_choice takes 'auto' or 'none': the model decides whether to "
                            "call a tool", "tool_choice")
    if not _has_tool_turn(lm):
        raise ApiError(400, f"this model has no tool-call protocol (no {TOOL} turn in its "
                            "tokenizer): drop tools, or serve a tool-using organism such as "
                            "organism:m", "tools")
    return set() if body.tool_choice == "none" else {t.name for t in body.tools or []}


def _render_chat(lm: LM, messages: list[_Message]) -> str:
    """The prompt for the model's reply, in its own chat template. Assistant tool calls are
    written in the call syntax; tool results go in tool turns (models with that turn only)."""
    if not getattr(lm.tokenizer, "chat_template", None):
        raise ApiError(400, "this model has no chat template: use /v1/completions", "messages")
    turns = []
    for m in messages:
        content = m.text()
        if m.role == "tool" and not _has_tool_turn(lm):
            raise ApiError(400, "a tool message, but this model has no tool turn", "messages")
        if m.role == "assistant" and m.tool_calls:
            if len(m.tool_calls) != 1 or content:
                raise ApiError(400, "an assistant turn holds one tool call and no text in the "
                                    "organisms' protocol", "messages")
            fn = m.tool_calls[0].function
            try:
                args = json.loads(fn.arguments or "{}")
                content = format_call(fn.name, args)
            except (ValueError, AssayError) as bad:
                raise ApiError(400, f"tool call arguments: {bad}", "messages") from None
        turns.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    return lm.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)


def _tool_call(text: str, tools: set[str]) -> dict | None:
    """The reply as an OpenAI tool call when it is a well-formed call of an offered tool."""
    if not tools:
        return None
    try:
        call = parse_call(text)
    except MalformedCall:
        return None
    if call is None or call.tool not in tools:
        return None
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return {"id": f"call_{digest}", "type": "function",
            "function": {"name": call.tool, "arguments": json.dumps(call.kwargs)}}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:24]}"
