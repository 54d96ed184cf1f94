"""A server over the xs organism, started once per module on a free loopback port."""

import json
import urllib.error
import urllib.request

import pytest

MODEL = "organism:xs"


@pytest.fixture(scope="module")
def xs_lm(xs_organism):
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.models import load

    return load(MODEL)


@pytest.fixture(scope="module")
def server(xs_lm):
    """(base URL, app) of `assay serve` over xs, in a thread of the test process."""
    from assay.serve import build_app, running

    app = build_app({MODEL: xs_lm}, max_queue=64, max_batch=16)
    with running(app) as url:
        yield url, app


def post(url: str, body, key: str | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    """(status, JSON reply) of a POST, errors included."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
