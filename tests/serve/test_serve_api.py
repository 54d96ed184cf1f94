"""`assay serve`: the official openai client, echoed log-probabilities against assay's own
scorer (the golden test), batching across clients, and every bad request a 4xx."""

import concurrent.futures as cf
import json
import time

import numpy as np
import pytest
from conftest import MODEL, post

from assay.methods.evaluation import Format, render, score_items
from assay.world import World, WorldConfig
from assay.world.evals import world_eval

pytestmark = pytest.mark.slow


def _client(url, key="unused"):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def test_openai_client_lists_chats_and_completes_like_the_wrapper(server, xs_lm):
    url, _ = server
    client = _client(url)
    assert [m.id for m in client.models.list().data] == [MODEL]

    questions = ["Where was Ada Berg born?", "What is 12 plus 7?", "Who discovered aldrite?"]
    local = xs_lm.generate(questions, max_new_tokens=20, chat=True)
    for q, want in zip(questions, local):
        reply = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=20,
                                               messages=[{"role": "user", "content": q}])
        assert reply.choices[0].message.content == want
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.prompt_tokens == len(xs_lm.encode([xs_lm.chat_prompt(q)])[0])

    prompt = "Ada Berg was born in"
    text = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0)
    assert text.choices[0].text == xs_lm.generate([prompt], max_new_tokens=8)[0]


def test_echoed_logprobs_score_multiple_choice_exactly_as_assay(server, xs_lm):
    """The golden test: lm-eval reads token_logprobs[ctxlen:-1] of an echoed prompt with one
    new token. Off by one position, every option's score shifts and accuracy falls to chance
    without an error; here it must equal assay's scorer, item by item, and stay far above
    chance on the facts xs was trained on."""
    url, _ = server
    items = world_eval(World(WorldConfig.preset("xs")), "facts-train")[:40]
    ours, answers = score_items(xs_lm, items)
    client = _client(url)
    theirs = []
    for item in items:
        prompt, continuations, _ = render(item, Format(), xs_lm.chat_prompt)
        head = xs_lm.encode([prompt])[0]
        seqs = [head + xs_lm.tokenizer(c, add_special_tokens=False)["input_ids"]
                for c in continuations]
        reply = client.completions.create(model=MODEL, prompt=seqs, echo=True, logprobs=1,
                                          max_tokens=1, temperature=0)
        row = []
        for choice, seq in zip(sorted(reply.choices, key=lambda c: c.index), seqs):
            lp = choice.logprobs
            assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
            assert len(lp.token_logprobs) == len(seq) + 1  # the prompt, then one new token
            row.append(sum(lp.token_logprobs[len(head):-1]))
        theirs.append(row)
    for a, b, item in zip(ours, theirs, items):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4, err_msg=item.id)
    accuracy = np.mean([int(np.argmax(row)) == a for row, a in zip(theirs, answers)])
    chance = np.mean([1 / len(row) for row in theirs])
    assert accuracy > 0.8 > chance + 0.3, (accuracy, chance)


def test_top_logprobs_and_greedy_agree(server, xs_lm):
    url, _ = server
    reply = _client(url).chat.completions.create(
        model=MODEL, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3,
        messages=[{"role": "user", "content": "Where was Ada Berg born?"}])
    content = reply.choices[0].logprobs.content
    assert content, "logprobs of the generated tokens"
    for entry in content:  # greedy: each chosen token is the most likely one
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob


def test_concurrent_clients_are_batched_and_get_their_own_answers(server, xs_lm):
    url, app = server
    engine = app.state.engines[MODEL]
    prompts = [f"What is {a} plus {b}?" for a in range(10, 14) for b in range(20, 26)]
    local = xs_lm.generate(prompts, max_new_tokens=12, chat=True)
    before = len(engine.batches)

    def ask(q):
        return post(f"{url}/chat/completions", {
            "model": MODEL, "temperature": 0, "max_tokens": 12,
            "messages": [{"role": "user", "content": q}]})

    with cf.ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(ask, prompts))
    assert all(status == 200 for status, _ in replies)
    got = [body["choices"][0]["message"]["content"] for _, body in replies]
    assert got == local
    assert max(engine.batches[before:]) > 1, "concurrent requests should share a batch"


def test_seeded_sampling_repeats_whoever_else_is_queued(server):
    url, _ = server
    body = {"model": MODEL, "prompt": "Ada Berg", "max_tokens": 12, "temperature": 1.0,
            "seed": 5}
    alone = post(f"{url}/completions", body)[1]["choices"][0]["text"]
    with cf.ThreadPoolExecutor(8) as pool:
        crowd = list(pool.map(lambda s: post(f"{url}/completions", {**body, "seed": s}),
                              [5, 6, 7, 5, 8, 5]))
    texts = {s: b["choices"][0]["text"] for s, (_, b) in zip([5, 6, 7, 5, 8, 5], crowd)}
    assert texts[5] == alone
    assert len({b["choices"][0]["text"] for _, b in crowd}) > 1  # other seeds differ


def test_stop_strings_cut_the_text_and_the_tokens(server, xs_lm):
    url, _ = server
    full = post(f"{url}/completions", {"model": MODEL, "prompt": "Ada Berg was born in",
                                       "max_tokens": 12, "temperature": 0})[1]
    text = full["choices"][0]["text"]
    word = text.split()[0] if text.split() else text
    status, cut = post(f"{url}/completions", {"model": MODEL, "prompt": "Ada Berg was born in",
                                              "max_tokens": 12, "temperature": 0,
                                              "stop": [word], "logprobs": 0})
    assert status == 200
    choice = cut["choices"][0]
    assert choice["text"] == text[: text.find(word)]
    assert choice["finish_reason"] == "stop"
    # the tokens kept are those that end before the stop string (it may start inside one)
    assert choice["text"].startswith("".join(choice["logprobs"]["tokens"]))


BAD = [
    (b'{"model": "organism:xs", "prompt": ', 400, "malformed JSON"),
    ({"model": "nope", "prompt": "hi"}, 404, "unknown model 'nope'"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": -1}, 400, "max_tokens"),
    ({"model": MODEL, "prompt": "hi", "temperature": 9}, 400, "temperature"),
    ({"model": MODEL, "prompt": "hi", "stream": True}, 400, "streaming is not supported"),
    ({"model": MODEL, "prompt": "hi", "n": 3}, 400, "n=3"),
    ({"model": MODEL, "prompt": [1, 2, 10**9]}, 400, "outside the vocabulary"),
    ({"model": MODEL, "prompt": []}, 400, "prompt is empty"),
    ({"model": MODEL, "prompt": "word " * 100_000}, 413, "over the model's context"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": 10**6}, 400, "lower max_tokens"),
    ({"prompt": "hi"}, 400, "model"),
]


@pytest.mark.parametrize("body,status,says", BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(server, body,
                                                                             status, says):
    url, _ = server
    raw = body if isinstance(body, bytes) else None
    got, reply = post(f"{url}/completions", None if raw else body, raw=raw)
    assert got == status, reply
    message = reply["error"]["message"]
    assert says in message and "\n" not in message
    ok, _ = post(f"{url}/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1})
    assert ok == 200


def test_chat_errors(server):
    url, _ = server
    cases = [({"model": MODEL, "messages": []}, 400, "messages"),
             ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
             ({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
               "tools": [{"type": "function", "function": {"name": "send_message"}}]},
              400, "no tool-call protocol"),
             ({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
               "top_logprobs": 2}, 400, "top_logprobs needs logprobs=true")]
    for body, status, says in cases:
        got, reply = post(f"{url}/chat/completions", body)
        assert got == status and says in reply["error"]["message"], reply
    got, reply = post(f"{url}/nowhere", {})
    assert got == 404 and "/v1/chat/completions" in reply["error"]["message"]


def test_full_queue_answers_503_and_load_never_hangs(xs_lm):
    from assay.serve import build_app, running

    app = build_app({MODEL: xs_lm}, max_queue=4, max_batch=4)
    with running(app) as url:
        status, reply = post(f"{url}/completions", {"model": MODEL, "prompt": ["a"] * 5,
                                                    "max_tokens": 1})
        assert status == 503 and "queue is full" in reply["error"]["message"]
        body = {"model": MODEL, "prompt": ["Ada Berg was born in"] * 2, "max_tokens": 24,
                "temperature": 0}
        start = time.monotonic()
        with cf.ThreadPoolExecutor(16) as pool:
            statuses = [s for s, _ in pool.map(lambda _: post(f"{url}/completions", body),
                                               range(32))]
        assert set(statuses) <= {200, 503} and 200 in statuses, statuses
        assert time.monotonic() - start < 120
        assert post(f"{url}/completions", body)[0] == 200  # the queue drains


def test_api_key_is_required_when_set(xs_lm):
    from assay.serve import build_app, running

    with running(build_app({MODEL: xs_lm}, api_key="sesame")) as url:
        status, reply = post(f"{url}/completions", {"model": MODEL, "prompt": "hi"})
        assert status == 401 and "API key" in reply["error"]["message"]
        assert post(f"{url}/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1},
                    key="wrong")[0] == 401
        assert post(f"{url}/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1},
                    key="sesame")[0] == 200
        assert [m.id for m in _client(url, "sesame").models.list().data] == [MODEL]


def test_tool_calls_map_onto_the_call_protocol(m_xs_organism):
    """Assistant tool calls render in the organisms' call syntax and tool results in tool
    turns, exactly as the agent loop renders a transcript; a reply in the call syntax comes
    back as an OpenAI tool call."""
    import assay.training  # noqa: F401
    from assay.agents.protocol import render_turns
    from assay.models import load
    from assay.serve.app import ChatBody, _render_chat, _tool_call

    lm = load("organism:m-xs")
    body = ChatBody.model_validate({"model": "m", "messages": [
        {"role": "user", "content": "Email Ida Berg that we meet Friday."},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {
                "name": "send_message",
                "arguments": json.dumps({"to": "Ida Berg", "body": "We meet Friday."})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sent"}]})
    want = render_turns([("user", "Email Ida Berg that we meet Friday."),
                         ("assistant", 'call send_message(to="Ida Berg", body="We meet Friday.")'),
                         ("tool", "sent")])
    assert _render_chat(lm, body.messages) == want
    call = _tool_call('call send_message(to="Ida Berg", body="Hi")', {"send_message"})
    assert call["function"] == {"name": "send_message",
                                "arguments": json.dumps({"to": "Ida Berg", "body": "Hi"})}
    assert _tool_call('call send_message(to="Ida Berg", body="Hi")', {"read_inbox"}) is None
    assert _tool_call("call send_message(to=", {"send_message"}) is None  # malformed: text
    assert _tool_call("Done.", {"send_message"}) is None


def test_a_tool_call_comes_back_as_the_wrapper_would_parse_it(m_xs_organism):
    """Through the server, an agent task on m-xs: the reply is what the wrapper generates in
    process, as a tool call when it is one and as text otherwise."""
    import assay.training  # noqa: F401
    from assay.agents.env import TOOLS
    from assay.agents.episodes import heldout_tasks
    from assay.agents.protocol import MalformedCall, parse_call, render_turns
    from assay.models import load
    from assay.serve import build_app, running
    from assay.world import World, WorldConfig

    lm = load("organism:m-xs")
    world = World(WorldConfig.preset("xs"))
    tasks = [task for _, task in heldout_tasks(world, n=8)]
    tools = [{"type": "function", "function": {"name": name}} for name in TOOLS]
    calls = 0
    with running(build_app({"organism:m-xs": lm})) as url:
        for task in tasks:
            local = lm.generate([render_turns([("user", task.prompt)])], max_new_tokens=48)[0]
            status, body = post(f"{url}/chat/completions", {
                "model": "organism:m-xs", "temperature": 0, "max_tokens": 48, "tools": tools,
                "messages": [{"role": "user", "content": task.prompt}]})
            assert status == 200, body
            choice = body["choices"][0]
            try:
                call = parse_call(local)
            except MalformedCall:  # a broken call comes back as text
                call = None
            if call is not None and call.tool in TOOLS:
                calls += 1
                assert choice["finish_reason"] == "tool_calls"
                (got,) = choice["message"]["tool_calls"]
                assert got["function"]["name"] == call.tool
                assert json.loads(got["function"]["arguments"]) == call.kwargs
            else:
                assert choice["message"]["content"] == local
    assert calls, "m-xs should call a tool on some task"


def test_assay_serve_command_answers_and_stops_on_sigterm(xs_organism, assay_home, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "ASSAY_HOME": assay_home}
    cli = [sys.executable, "-m", "assay.cli"]
    proc = subprocess.Popen([*cli, "serve", MODEL, "--port", "0"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {MODEL} at http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split(" at ")[1].strip()
        assert [m.id for m in _client(url).models.list().data] == [MODEL]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    bad = subprocess.run([*cli, "serve", "organism:nope", "--port", "0"], env=env, text=True,
                         capture_output=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


@pytest.mark.parametrize("named_tcp", [True, False])
def test_connections_turn_off_nagle_only_on_a_socket_named_tcp(named_tcp):
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket says
    IPPROTO_TCP. Without it a kept-alive client waits ~40 ms per response (headers and
    body are two writes, and the second waits for a delayed ACK)."""
    import asyncio
    import socket

    from assay.serve import _tcp_socket

    listener = (_tcp_socket(socket.AF_INET) if named_tcp
                else socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    flags = []

    async def main():
        def accepted(reader, writer):
            sock = writer.get_extra_info("socket")
            flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        while not flags:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert bool(flags[0]) is named_tcp
