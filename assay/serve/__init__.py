"""``assay serve``: the OpenAI-compatible HTTP API over any model the wrapper loads.

`build_app` makes the ASGI app (`assay.serve.app`); `serve` loads models and runs it on
uvicorn, bound to loopback unless told otherwise. The queue and batching are
`assay.serve.engine`.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import uvicorn

from assay.errors import AssayError
from assay.serve.app import build_app, context_length
from assay.serve.engine import Busy, Engine

__all__ = ["Busy", "Engine", "build_app", "context_length", "running", "serve"]

logger = logging.getLogger(__name__)


def _tcp_socket(family: int) -> socket.socket:
    """A listening socket named as TCP (protocol IPPROTO_TCP, not 0): asyncio turns off
    Nagle's algorithm only on connections it recognises as TCP, and without that a response
    written as headers then body waits ~40 ms for the client's delayed ACK on every
    kept-alive request."""
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's server, announcing its address once it listens (tests wait for that line)."""

    def __init__(self, config: uvicorn.Config, line: str, announce: Callable[[str], None]):
        super().__init__(config)
        self._line, self._announce = line, announce

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._announce(self._line)


def serve(specs: Sequence[str], host: str = "127.0.0.1", port: int = 8000, *,
          api_key: str | None = None, max_queue: int = 256, max_batch: int = 32,
          allow_pickle: bool = False, announce: Callable[[str], None] = print) -> None:
    """Load each model spec and serve them all until SIGTERM or Ctrl-C; ``port`` 0 takes a
    free port. ``announce`` gets one line with the address once the server listens."""
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.models import ModelSpec, load

    if not specs:
        raise AssayError("give at least one model to serve, e.g. assay serve organism:s")
    if not 0 <= port <= 65535:
        raise AssayError(f"bad --port {port}: give 0 (any free port) to 65535")
    parsed = [ModelSpec.parse(s) for s in specs]
    if len({str(s) for s in parsed}) != len(parsed):
        raise AssayError("a model is named twice: give each model once")
    if not _loopback(host) and api_key is None:
        logger.warning("serving on %s without --api-key: anyone who reaches it can use it", host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _tcp_socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise AssayError(f"cannot listen on {host}:{port} ({e.strerror}): pick another --port "
                         "or 0 for any free one") from None
    try:
        models = {str(s): load(s, allow_pickle=allow_pickle) for s in parsed}
        app = build_app(models, api_key=api_key, max_queue=max_queue, max_batch=max_batch)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30,
                                lifespan="on")
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        server = _Server(config, f"serving {', '.join(models)} at http://{shown}:{bound}/v1",
                         announce)
        # uvicorn finishes in-flight requests on SIGTERM or Ctrl-C, restores the handlers it
        # found and raises the signal again: with these, that ends the command with exit 0
        quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in quiet.items():
                signal.signal(sig, handler)
    finally:
        sock.close()


@contextmanager
def running(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` from a thread of this process on a free loopback port; yields the base URL
    (``http://127.0.0.1:PORT/v1``) once it listens, and shuts the server down on exit (for
    tests, benchmarks and notebooks)."""
    sock = _tcp_socket(socket.AF_INET)
    sock.bind((host, 0))
    ready = threading.Event()
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"), "",
                     lambda _: ready.set())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not ready.wait(60):
            raise AssayError("the server did not start within 60 s")
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
