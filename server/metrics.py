"""``GET /metrics``: what the server did, in the Prometheus text format.

One :class:`Metrics` per app (``Services.metrics``), each with its own ``CollectorRegistry``, so
several apps in one process (tests, an embedding program) never share or collide on a series.
Everything is counted in three places:

* :class:`HTTPMetrics`, an ASGI middleware: every HTTP request by route, method and status code,
  and its latency (``/mcp`` included; a path that is no route of the app counts as ``other``);
* :class:`ToolMetrics`, a fastmcp middleware: every MCP tool call, its errors and its latency;
* the engine's events (:class:`~adaptrank.core.engine.reranker.EngineEvents`, which
  :class:`Metrics` implements): pairs scored, score-cache hits and misses, forward-pass sizes and
  how many requests the micro-batcher merged into each.

State that already lives elsewhere is read at scrape time (:class:`_StateCollector`): the loaded
models, the active model-store versions, jobs by kind and state, and the LLM backends' own work
counters (``LLM.stats``). ``/metrics`` needs the bearer token like every route but ``/healthz`` and
``/readyz``; ``ADAPTRANK_METRICS_PUBLIC_ON_LOOPBACK=true`` lets loopback clients scrape without it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from fastmcp.exceptions import FastMCPError
from fastmcp.exceptions import NotFoundError as UnknownComponent
from fastmcp.server.middleware import Middleware
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adaptrank.core import __version__

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from adaptrank.server.context import Services

log = logging.getLogger(__name__)

#: the ``route`` label of a request path; any other path counts as "other" (bounded label values)
ROUTES = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/mcp", "/healthz", "/readyz", "/metrics"})
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PAIRS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REQUESTS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class Metrics:
    """The counters of one app, and the engine events that move them."""

    def __init__(self, services: Services) -> None:
        self.registry = r = CollectorRegistry()
        self.http_requests = Counter(
            "adaptrank_http_requests",
            "HTTP requests by route, method and status code",
            ["route", "method", "code"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "adaptrank_http_request_duration_seconds",
            "HTTP request latency (GET /mcp is an MCP session's listening stream: it lasts as long as the session)",
            ["route", "method"],
            buckets=SECONDS,
            registry=r,
        )
        self.tool_calls = Counter("adaptrank_mcp_tool_calls", "MCP tool calls", ["tool"], registry=r)
        self.tool_errors = Counter(
            "adaptrank_mcp_tool_errors",
            "MCP tool calls that failed; kind=request: bad input, an unknown model "
            "or tool (the caller's message names the field); kind=internal: a masked server fault",
            ["tool", "kind"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "adaptrank_mcp_tool_duration_seconds", "MCP tool call latency", ["tool"], buckets=SECONDS, registry=r
        )
        self.pairs_scored = Counter(
            "adaptrank_pairs_scored",
            "(query, passage) pairs scored for requests, from the cache or a model",
            ["model"],
            registry=r,
        )
        self.cache_hits = Counter("adaptrank_score_cache_hits", "pairs served from the score cache", registry=r)
        self.cache_misses = Counter("adaptrank_score_cache_misses", "pairs the score cache did not hold", registry=r)
        self.pass_pairs = Histogram(
            "adaptrank_forward_pass_pairs", "pairs per forward pass (batch size)", buckets=PAIRS, registry=r
        )
        self.pass_requests = Histogram(
            "adaptrank_forward_pass_requests",
            "requests merged into one forward pass by the micro-batcher",
            buckets=REQUESTS,
            registry=r,
        )
        self.merges = Counter(
            "adaptrank_microbatch_merges", "forward passes that merged two or more requests", registry=r
        )
        r.register(_StateCollector(services))

    # -- EngineEvents (called by the engine, from its worker threads too) ---------------------------
    def scored(self, model: str, pairs: int, cached: int) -> None:
        self.pairs_scored.labels(model).inc(pairs)
        self.cache_hits.inc(cached)
        self.cache_misses.inc(pairs - cached)

    def forward_pass(self, model: str, pairs: int, requests: int) -> None:
        self.pass_pairs.observe(pairs)
        self.pass_requests.observe(requests)
        if requests > 1:
            self.merges.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges and counters read from the app's state at each scrape (nothing is built for them:
    a model store, reranker or jobs database the app never used is not opened)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Any:
        info = GaugeMetricFamily("adaptrank_build_info", "the server's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        built = self.services.built()
        loaded = GaugeMetricFamily(
            "adaptrank_model_loaded",
            "models loaded in memory (1 per model and version)",
            labels=["model", "version", "backend"],
        )
        if "reranker" in built:
            for r in built["reranker"].loaded():
                loaded.add_metric([r.name, r.version, r.backend], 1)
        yield loaded
        active = GaugeMetricFamily(
            "adaptrank_model_active", "the active version of each model-store model", labels=["model", "version"]
        )
        try:
            store = self.services.store
            for name in store.names():
                version = store.active_version(name)
                if version:
                    active.add_metric([name, version], 1)
        except Exception:
            log.warning("metrics: could not list the model store", exc_info=True)
        yield active
        yield self._jobs()
        tokens = CounterMetricFamily(
            "adaptrank_llm_generated_tokens",
            "tokens the server's LLM backends generated (as each backend "
            "counts them; the openai backend counts what the endpoint reports in usage)",
            labels=["llm"],
        )
        outputs = CounterMetricFamily(
            "adaptrank_llm_outputs", "completions the server's LLM backends returned", labels=["llm"]
        )
        from adaptrank.core.llm.factory import cached_llms

        for llm in cached_llms():
            tokens.add_metric([llm.name], llm.stats.generated_tokens)
            outputs.add_metric([llm.name], llm.stats.prompts)
        yield tokens
        yield outputs

    def _jobs(self) -> GaugeMetricFamily:
        jobs = GaugeMetricFamily("adaptrank_jobs", "background jobs by kind and state", labels=["kind", "state"])
        path = self.services.settings.jobs_db
        if not path.is_file():
            return jobs
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
            try:
                rows = db.execute("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state").fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.warning("metrics: could not read the jobs database %s: %s", path, exc)
            return jobs
        for kind, state, n in rows:
            jobs.add_metric([str(kind), str(state)], n)
        return jobs


class HTTPMetrics:
    """ASGI middleware: counts every HTTP request and times it (outermost of the app's own
    middleware, so a 413 of the body limit and a 401 count too)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").rstrip("/") or "/"
        route = path if path in ROUTES else "other"
        method = scope.get("method", "")
        code = 500  # unless a response starts
        start = time.perf_counter()

        async def counting_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.http_requests.labels(route, method, str(code)).inc()
            self.metrics.http_seconds.labels(route, method).observe(time.perf_counter() - start)


class ToolMetrics(Middleware):
    """fastmcp middleware: counts MCP tool calls and their errors, and times them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def on_call_tool(self, context, call_next):
        tool = context.message.name
        start = time.perf_counter()
        try:
            return await call_next(context)
        except UnknownComponent:
            tool = "unknown"  # not a label value a caller may invent
            self.metrics.tool_errors.labels(tool, "request").inc()
            raise
        except Exception as exc:
            self.metrics.tool_errors.labels(tool, _error_kind(exc)).inc()
            raise
        finally:
            self.metrics.tool_calls.labels(tool).inc()
            self.metrics.tool_seconds.labels(tool).observe(time.perf_counter() - start)


def _error_kind(exc: BaseException) -> str:
    """``request`` for errors the caller caused and reads (bad input, unknown model: a ToolError
    raised on purpose); ``internal`` for a fault fastmcp masks (a ToolError caused by another error)."""
    if not isinstance(exc, FastMCPError):
        return "internal"
    cause = exc.__cause__
    return (
        "internal"
        if cause is not None and not isinstance(cause, (FastMCPError, PydanticValidationError))
        else "request"
    )


def _client_is_loopback(request: Request) -> bool:
    from adaptrank.server.auth import is_loopback

    host = request.client.host if request.client else ""
    return bool(host) and is_loopback(host)


def register(mcp: FastMCP, services: Services) -> None:
    """``GET /metrics`` (HTTP transport only)."""

    @mcp.custom_route("/metrics", methods=["GET"], name="metrics")
    async def metrics_route(request: Request) -> Response:
        from adaptrank.server.http import _authorized

        s = services.settings
        if not _authorized(request, s) and not (s.metrics_public_on_loopback and _client_is_loopback(request)):
            return JSONResponse(
                {"message": "missing or invalid bearer token (send 'Authorization: Bearer <token>')"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await asyncio.to_thread(services.metrics.render)  # reads the model store and jobs db
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
