"""Issue 9, defects 5-8 on a real uvicorn server (127.0.0.1, a free port).

5: lone surrogates and deeply nested JSON are 4xx naming the field (they were 500s), and a 4xx
   keeps the keep-alive connection. 6/7: one body limit (ADAPTRANK_MAX_REQUEST_BYTES) for
   /v1/rerank and /mcp, a 413 that names it, and /mcp accepts every request the documented
   character limits allow (the MCP SDK's own 4 MiB cap refused them). 8: strict types and
   Content-Type, as Cohere is.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest
from fastmcp import Client

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.http import serve_in_thread

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path, tiny_cross_encoder):
    settings = Settings(
        home=tmp_path / "home", default_model=f"cross-encoder:{tiny_cross_encoder}", port=0, max_request_bytes=64 * 1024
    )
    services = Services(settings)
    with serve_in_thread(create_app(services=services), settings, timeout=30) as url:
        yield url
    services.close()


def _post(url: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(f"{url}/v1/rerank", content=body, headers={"content-type": content_type}, timeout=60)


SURROGATES = [
    (b'{"query": "q", "documents": ["ok", "bad \\ud800 text"]}', "documents[1]", "at character 4"),
    (b'{"query": "q \\udfff", "documents": ["a"]}', "query", "U+DFFF"),
    (b'{"query": "q", "documents": [{"text": "a", "title": "\\ud83d"}]}', "documents[0].title", "U+D83D"),
    (b'{"query": "q", "documents": ["a"], "model": "\\ud800"}', "model", "lone surrogate"),
    (b'{"query": "q", "documents": ["a"], "\\ud800": "\\ud800"}', "\\ud800 (a key)", "lone surrogate"),
    (b'{"query": "q", "documents": [{"text": "a", "x": {"\\udc00": 1}}]}', "documents[0].x.\\udc00 (a key)", "U+DC00"),
]


@pytest.mark.parametrize(("body", "field", "text"), SURROGATES, ids=[s[1] for s in SURROGATES])
def test_lone_surrogates_are_400_naming_the_field(server, body, field, text):
    r = _post(server, body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and text in r.json()["message"], r.json()


def test_deep_json_is_400_naming_the_field(server):
    deep = b'{"query": "q", "documents": ["a"], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = _post(server, deep)
    assert r.status_code == 400 and r.json()["field"] == "body" and "nested too deeply" in r.json()["message"]
    nested = {"query": "q", "documents": [{"text": "a", "meta": {}}]}
    inner = nested["documents"][0]["meta"]
    for _ in range(40):
        inner["k"] = {}
        inner = inner["k"]
    r = _post(server, json.dumps(nested).encode())
    assert r.status_code == 400, r.text
    assert r.json()["field"].startswith("documents[0].meta.k.k") and "the limit is 32" in r.json()["message"]


def test_a_4xx_keeps_the_keep_alive_connection(server):
    """Bad requests of every kind, then a good one, all on one TCP connection."""
    host = urlsplit(server)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    bodies = [
        (b'{"query": "q", "documents": ["\\ud800"]}', 400),
        (b'{"query": "q", "documents": ["a"], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (b'{"query": "q", "documents": ["a"], "model": "/etc"}', 404),
        (b'{"query": "q", "documents": ["a"], "top_n": "2"}', 422),
        (b"{not json", 400),
        (b'{"query": "q", "documents": ["' + b"x" * 70_000 + b'"]}', 413),  # drained, then refused
        (b'{"query": "q", "documents": ["a", "b"]}', 200),
    ]
    conn.connect()
    sock = conn.sock
    for body, status in bodies:
        conn.request("POST", "/v1/rerank", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == status
        assert r.getheader("connection", "").lower() != "close"
        assert conn.sock is sock, "the server closed the connection after a refusal"
    conn.close()


def test_body_limit_is_a_413_naming_the_limit_on_both_routes(server):
    big = json.dumps({"query": "q", "documents": ["x" * 70_000]}).encode()
    r = _post(server, big)
    assert r.status_code == 413
    assert r.json() == {
        "field": "body",
        "message": f"body: is {len(big)} bytes; the limit is 65536 bytes (ADAPTRANK_MAX_REQUEST_BYTES)",
    }

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"x" * 10_000

    r = httpx.post(f"{server}/v1/rerank", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "more than 65536 bytes" in r.json()["message"]
    r = httpx.post(
        f"{server}/mcp",
        content=big,
        timeout=60,
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
    )
    assert r.status_code == 413
    assert "the limit is 65536 bytes (ADAPTRANK_MAX_REQUEST_BYTES)" in r.json()["error"]["message"]
    assert _post(server, b'{"query": "q", "documents": ["a"]}').status_code == 200  # still serving


STRICT = [
    ({"query": "q", "documents": ["a", "b"], "top_n": "2"}, "top_n", "valid integer"),
    ({"query": "q", "documents": ["a"], "top_n": 1.0}, "top_n", "valid integer"),
    ({"query": "q", "documents": ["a"], "top_n": True}, "top_n", "valid integer"),
    ({"query": "q", "documents": ["a"], "return_documents": "yes"}, "return_documents", "valid boolean"),
    ({"query": "q", "documents": ["a"], "return_documents": 1}, "return_documents", "valid boolean"),
    ({"query": 5, "documents": ["a"]}, "query", "valid string"),
    ({"query": "q", "documents": [5]}, "documents[0]", "valid string"),
]


@pytest.mark.parametrize(("payload", "field", "text"), STRICT, ids=[f"{s[1]}={s[0].get(s[1])!r}" for s in STRICT])
def test_types_are_strict_like_cohere(server, payload, field, text):
    r = _post(server, json.dumps(payload).encode())
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and text in r.json()["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_only_json_bodies_are_accepted(server, content_type):
    r = _post(server, b'{"query": "q", "documents": ["a"]}', content_type)
    assert r.status_code == 415 and r.json()["field"] == "Content-Type", r.text
    assert _post(server, b'{"query": "q", "documents": ["a"]}', "application/json; charset=utf-8").status_code == 200


async def test_mcp_reaches_its_documented_limits(tmp_path, tiny_cross_encoder):
    """A request at the documented character limits is ~6 MB as JSON (control characters are
    escaped as \\u0001); the MCP SDK's transport refused anything over 4 MiB."""
    settings = Settings(home=tmp_path / "home", default_model=f"cross-encoder:{tiny_cross_encoder}", port=0)
    services = Services(settings)
    n = settings.max_total_chars // settings.max_document_chars
    documents = ["\x01" * settings.max_document_chars] * n
    assert len(json.dumps(documents)) > 4 * 1024 * 1024
    with serve_in_thread(create_app(services=services), settings, timeout=30) as url:
        async with Client(f"{url}/mcp", timeout=120) as client:
            res = await client.call_tool("rerank", {"query": "q", "documents": documents, "top_n": 1})
            assert len(res.structured_content["results"]) == 1
            over = await client.call_tool(
                "rerank", {"query": "q", "documents": [*documents, "a"]}, raise_on_error=False
            )
            assert over.is_error and "the limit is 1000000" in over.content[0].text
    services.close()


async def test_a_stop_lets_running_requests_finish_and_ends_mcp_sessions(tmp_path, tiny_cross_encoder):
    """A stop while a rerank is still scoring (longer than uvicorn's own grace) and an MCP client
    holds its session open: the rerank is answered 200, and the server is down within seconds."""
    import threading
    import time as clock

    settings = Settings(
        home=tmp_path / "home",
        default_model=f"cross-encoder:{tiny_cross_encoder}",
        port=0,
        graceful_shutdown_seconds=30,
    )
    services = Services(settings)
    loaded = services.reranker._get(services.reranker.default_model)
    original = loaded.batcher.fn
    started = threading.Event()

    def slow(pairs):
        started.set()
        clock.sleep(4)  # uvicorn alone cancelled requests after 2 s
        return original(pairs)

    loaded.batcher.fn = slow
    answers: list[httpx.Response] = []
    ctx = serve_in_thread(create_app(services=services), settings, timeout=60)
    url = ctx.__enter__()
    async with Client(f"{url}/mcp", timeout=60) as client:  # a session with its SSE stream open
        await client.list_tools()
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=60)
            )
        )
        request.start()
        assert started.wait(30)
        t0 = clock.monotonic()
        ctx.__exit__(None, None, None)  # the stop: should_exit, then wait for the server thread
        stopped = clock.monotonic() - t0
        request.join(30)
    services.close()
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert stopped < 15, f"the stop took {stopped:.1f} s"
