"""Issue 12: GET /metrics, GET /readyz and JSON logs on a real server (127.0.0.1, a free port).

The counters must move by exactly what the requests did: two /v1/rerank calls with the same N
documents (the second from the score cache), one MCP ``rerank`` call through a real fastmcp Client,
one bad request on each; and the text must parse as Prometheus exposition.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from procs import AdaptrankServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from starlette.authentication import UnauthenticatedUser
from starlette.requests import Request

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.http import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N = 5
M = 3
TOKEN = "s3cret-token"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a /metrics text (parsing it is part of the test)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _sum(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def app_server(tmp_path, tiny_cross_encoder):
    servers = []

    def start(**overrides):
        settings = Settings(
            home=tmp_path / f"home{len(servers)}",
            default_model=f"cross-encoder:{tiny_cross_encoder}",
            port=0,
            **overrides,
        )
        services = Services(settings)
        ctx = serve_in_thread(create_app(services=services), settings, timeout=30)
        url = ctx.__enter__()
        servers.append((ctx, services))
        return url

    yield start
    for ctx, services in servers:
        ctx.__exit__(None, None, None)
        services.close()


def _scrape(url: str, **headers) -> dict:
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(r.text)


async def test_metrics_move_by_exactly_what_the_requests_did(app_server):
    url = app_server()
    before = _scrape(url)
    docs = [f"passage number {i} about gout and uric acid" for i in range(N)]
    for _ in range(2):
        r = httpx.post(f"{url}/v1/rerank", json={"query": "what causes gout?", "documents": docs}, timeout=60)
        assert r.status_code == 200, r.text
    bad = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a"], "top_n": 0}, timeout=60)
    assert bad.status_code == 400
    async with Client(f"{url}/mcp", timeout=60) as client:
        res = await client.call_tool(
            "rerank", {"query": "what is gout?", "documents": [f"other {i}" for i in range(M)]}
        )
        assert len(res.structured_content["results"]) == M
        with pytest.raises(ToolError, match="top_n"):
            await client.call_tool("rerank", {"query": "q", "documents": ["a"], "top_n": 0})
    after = _scrape(url, accept="text/plain")

    def delta(name, **labels):
        return _sum(after, name, **labels) - _sum(before, name, **labels)

    assert delta("adaptrank_http_requests_total", route="/v1/rerank", method="POST", code="200") == 2
    assert delta("adaptrank_http_requests_total", route="/v1/rerank", method="POST", code="400") == 1
    assert delta("adaptrank_http_request_duration_seconds_count", route="/v1/rerank", method="POST") == 3
    assert delta("adaptrank_http_requests_total", route="/mcp", method="POST") >= 2  # initialize + 2 tool calls...
    assert delta("adaptrank_http_requests_total", route="/metrics", code="200") == 1  # the first scrape
    assert delta("adaptrank_mcp_tool_calls_total", tool="rerank") == 2
    assert delta("adaptrank_mcp_tool_errors_total", tool="rerank", kind="request") == 1
    assert delta("adaptrank_mcp_tool_errors_total", kind="internal") == 0
    assert delta("adaptrank_mcp_tool_duration_seconds_count", tool="rerank") == 2
    # pairs: N, N again (from the cache), M; the bad requests never reach the engine
    assert delta("adaptrank_pairs_scored_total") == 2 * N + M
    assert delta("adaptrank_score_cache_hits_total") == N
    assert delta("adaptrank_score_cache_misses_total") == N + M
    assert delta("adaptrank_forward_pass_pairs_sum") == N + M
    assert delta("adaptrank_forward_pass_requests_sum") == delta("adaptrank_forward_pass_requests_count") >= 2
    loaded = [dict(ls) for (n, ls), v in after.items() if n == "adaptrank_model_loaded" and v == 1]
    assert [d["backend"] for d in loaded] == ["cross-encoder"], loaded
    assert _sum(after, "adaptrank_build_info") == 1


async def test_jobs_and_active_models_are_gauges(app_server, tmp_path):
    url = app_server()
    home = tmp_path / "home0"
    import sqlite3

    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / "jobs.sqlite")
    db.execute("CREATE TABLE jobs (id TEXT, kind TEXT, state TEXT)")
    db.executemany(
        "INSERT INTO jobs VALUES (?,?,?)",
        [("a", "generate", "succeeded"), ("b", "generate", "succeeded"), ("c", "finetune", "failed")],
    )
    db.commit()
    db.close()
    (home / "models" / "med" / "v1").mkdir(parents=True)
    (home / "models" / "med" / "v1" / "card.json").write_text("{}")
    (home / "models" / "med" / "ACTIVE").write_text("v1")
    after = _scrape(url)
    assert _value(after, "adaptrank_jobs", kind="generate", state="succeeded") == 2
    assert _value(after, "adaptrank_jobs", kind="finetune", state="failed") == 1
    assert _value(after, "adaptrank_model_active", model="med", version="v1") == 1


def test_metrics_need_the_token_unless_loopback_is_allowed(app_server):
    url = app_server(token=TOKEN)
    r = httpx.get(f"{url}/metrics", timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    after = _scrape(url, Authorization=f"Bearer {TOKEN}")
    assert _value(after, "adaptrank_http_requests_total", route="/metrics", method="GET", code="401") == 2
    # the loopback setting: a scraper on 127.0.0.1 needs no token
    public = app_server(token=TOKEN, metrics_public_on_loopback=True)
    assert httpx.get(f"{public}/metrics", timeout=30).status_code == 200
    assert httpx.post(f"{public}/v1/rerank", json={"query": "q", "documents": ["a"]}, timeout=30).status_code == 401


async def test_the_loopback_setting_does_not_open_metrics_to_other_clients(tmp_path):
    settings = Settings(home=tmp_path, token=TOKEN, metrics_public_on_loopback=True)
    mcp = create_app(settings)
    route = next(r for r in mcp._get_additional_http_routes() if getattr(r, "path", None) == "/metrics")

    def request(client_host: str) -> Request:
        return Request(
            {
                "type": "http",
                "method": "GET",
                "path": "/metrics",
                "headers": [],
                "query_string": b"",
                "client": (client_host, 40000),
                "user": UnauthenticatedUser(),
            }
        )

    assert (await route.endpoint(request("10.1.2.3"))).status_code == 401
    assert (await route.endpoint(request("127.0.0.1"))).status_code == 200
    assert (await route.endpoint(request("::1"))).status_code == 200


def test_readyz_ready(app_server):
    url = app_server()
    r = httpx.get(f"{url}/readyz", timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"]["model"]["ok"] and body["checks"]["jobs"]["ok"]
    assert body["checks"]["chroma"] == {"ok": True, "detail": "not configured"}
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200


def test_readyz_names_an_unreachable_chroma(app_server):
    url = app_server(chroma_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    r = httpx.get(f"{url}/readyz", timeout=60)
    assert r.status_code == 503, r.text
    assert r.json()["failed"] == ["chroma"] and r.json()["status"] == "not ready"
    assert "ConnectError" in r.json()["checks"]["chroma"]["detail"]
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200  # still alive


def test_readyz_names_an_unwritable_jobs_db(tmp_path, tiny_cross_encoder):
    """The jobs database's folder is under a regular file: no one, root included, can create it."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    settings = Settings(home=blocker / "home", default_model=f"cross-encoder:{tiny_cross_encoder}", port=0, token=TOKEN)
    services = Services(settings)
    with serve_in_thread(create_app(services=services), settings, timeout=30) as url:
        r = httpx.get(f"{url}/readyz", timeout=60)
        assert r.status_code == 503, r.text
        assert r.json()["failed"] == ["jobs"] and "checks" not in r.json()  # no token: names only
        r = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.json()["failed"] == ["jobs"] and "Error" in r.json()["checks"]["jobs"]["detail"]
    services.close()


def test_serve_writes_json_logs(tmp_path, tiny_cross_encoder):
    server = AdaptrankServer(
        {"ADAPTRANK_HOME": str(tmp_path / "home"), "ADAPTRANK_LOG_FORMAT": "json"},
        tmp_path / "serve.log",
        timeout=120,
        extra_args=["--model", f"cross-encoder:{tiny_cross_encoder}", "--log-level", "info"],
    )
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=60).status_code == 200
        time.sleep(0.5)
    finally:
        server.stop()
    records = []
    for line in (tmp_path / "serve.log").read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    loggers = {r["logger"] for r in records}
    assert "uvicorn.error" in loggers and "uvicorn.access" in loggers, records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any("/readyz" in r["message"] for r in access), access
