"""The HTTP app on a real uvicorn server (127.0.0.1, a free port): Cohere ``/v1/rerank``, ``/healthz``,
bearer auth on both ``/v1/rerank`` and the MCP endpoint, and the non-loopback bind guard."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from fastmcp import Client

from adaptrank.core.errors import InputError
from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.auth import check_bind, is_loopback
from adaptrank.server.context import Services
from adaptrank.server.http import serve_in_thread

pytestmark = pytest.mark.timeout(300)

TOKEN = "s3cret-token"


def _settings(tmp_path, model: str, **kw) -> Settings:
    return Settings(
        home=tmp_path / "home",
        default_model=f"cross-encoder:{model}",
        host="127.0.0.1",
        port=0,
        max_documents=5,
        max_query_chars=40,
        max_document_chars=60,
        **kw,
    )


@pytest.fixture
def server(tmp_path, tiny_cross_encoder):
    services = Services(_settings(tmp_path, tiny_cross_encoder))
    with serve_in_thread(create_app(services=services), services.settings, timeout=30) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield http, services
    services.close()


@pytest.fixture
def secured(tmp_path, tiny_cross_encoder):
    services = Services(_settings(tmp_path, tiny_cross_encoder, token=TOKEN))
    with serve_in_thread(create_app(services=services), services.settings, timeout=30) as url:
        yield url
    services.close()


def test_healthz(server):
    http, services = server
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["default_model"] == services.settings.default_model


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
def test_cohere_rerank_shape_and_scores(server, path):
    http, services = server
    docs = ["gout is caused by uric acid", {"text": "paris is in france", "title": "Paris"}, "joint pain", "tea"]
    r = http.post(
        path,
        json={
            "query": "what causes gout",
            "documents": docs,
            "top_n": 2,
            "return_documents": True,
            "model": "rerank-english-v3.0",
            "rank_fields": ["text"],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] and body["meta"]["model"] == services.settings.default_model
    expected = services.reranker.scorer().score_pairs(
        [("what causes gout", d if isinstance(d, str) else d["text"]) for d in docs]
    )
    order = list(np.argsort(-expected, kind="stable"))[:2]
    assert [x["index"] for x in body["results"]] == order
    for x in body["results"]:
        assert x["relevance_score"] == pytest.approx(float(expected[x["index"]]), abs=1e-5)
        sent = docs[x["index"]]
        assert x["document"] == ({"text": sent} if isinstance(sent, str) else sent)


def test_cohere_rerank_omits_documents_unless_asked(server):
    http, _ = server
    body = http.post("/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]}).json()
    assert sorted(x["index"] for x in body["results"]) == [0, 1, 2]
    assert all(set(x) == {"index", "relevance_score"} for x in body["results"])


BAD_REQUESTS = [
    # (json body, status, field, text the message must contain)
    ({"query": "", "documents": ["a"]}, 400, "query", "non-empty"),
    ({"query": "q" * 41, "documents": ["a"]}, 400, "query", "the limit is 40"),
    ({"query": "q", "documents": []}, 400, "documents", "at least one"),
    ({"query": "q", "documents": ["a"] * 6}, 400, "documents", "has 6 items; the limit is 5"),
    ({"query": "q", "documents": ["a", "x" * 61]}, 400, "documents[1].text", "has 61 characters; the limit is 60"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n", "between 1 and 5"),
    ({"query": "q", "documents": ["a"], "top_n": 9}, 400, "top_n", "between 1 and 5"),
    ({"query": "q", "documents": ["a"], "model": "no-such-model"}, 404, "model", "unknown model 'no-such-model'"),
    ({"documents": ["a"]}, 422, "query", "Field required"),
    ({"query": "q", "documents": [{"id": "x"}]}, 422, "documents[0].text", "Field required"),
    ({"query": "q", "documents": "abc"}, 422, "documents", "valid list"),
    ({"query": "q", "documents": ["a"], "top_n": "many"}, 422, "top_n", "valid integer"),
]


@pytest.mark.parametrize(
    ("payload", "status", "field", "text"), BAD_REQUESTS, ids=[f"{b[1]}-{b[2]}" for b in BAD_REQUESTS]
)
def test_bad_requests_are_4xx_naming_field_and_limit(server, payload, status, field, text):
    http, _ = server
    r = http.post("/v1/rerank", json=payload)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and text in body["message"] and body["message"].startswith(field), body
    # The server keeps serving.
    assert http.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200


def test_invalid_json_body_is_400(server):
    http, _ = server
    r = http.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"


def test_auth_guards_cohere_route_and_mcp_endpoint(secured):
    payload = {"query": "q", "documents": ["a", "b"]}
    with httpx.Client(base_url=secured, timeout=30) as http:
        assert http.get("/healthz").status_code == 200  # liveness stays open
        missing = http.post("/v1/rerank", json=payload)
        assert missing.status_code == 401 and "bearer" in missing.json()["message"]
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http.post("/v1/rerank", json=payload, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = http.post("/v1/rerank", json=payload, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 2
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        mcp_headers = {"Accept": "application/json, text/event-stream"}
        assert http.post("/mcp", json=init, headers=mcp_headers).status_code == 401
        assert http.post("/mcp", json=init, headers={**mcp_headers, "Authorization": "Bearer nope"}).status_code == 401


async def test_mcp_over_http_with_token(secured):
    async with Client(f"{secured}/mcp", auth=TOKEN) as client:
        res = await client.call_tool("rerank", {"query": "q", "documents": ["a", "b"]})
    assert len(res.structured_content["results"]) == 2


def test_non_loopback_bind_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with pytest.raises(InputError, match="refusing to listen on '0.0.0.0'.*ADAPTRANK_TOKEN") as exc:
        check_bind("0.0.0.0", None)
    assert exc.value.field == "host"
    check_bind("0.0.0.0", "tok")
    check_bind("127.0.0.1", None)
    with pytest.raises(InputError, match="refusing"):
        with serve_in_thread(create_app(Settings(host="0.0.0.0")), Settings(host="0.0.0.0", port=0)):
            pass
