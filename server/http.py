"""The HTTP side of the server: a Cohere-compatible ``POST /v1/rerank``, ``GET /healthz`` (liveness;
``GET /readyz`` is in :mod:`.health`, ``GET /metrics`` in :mod:`.metrics`), and
the helpers that serve the whole app (MCP streamable HTTP at ``/mcp`` plus these routes) with uvicorn.

The Cohere route lets existing rerank clients built on the Cohere SDK (its own, and the Cohere
rerankers of LlamaIndex and LangChain) point their base URL at adaptrank and work unchanged: the same request (``query``, ``documents`` as strings or objects
with ``text``, ``top_n``, ``return_documents``, ``model``) and the same response (``results`` of
``index``, ``relevance_score``, ``document``). Cohere's own model names (``rerank-english-v3.0``,
``rerank-v3.5``...) are what those clients send by default, so a ``rerank-*`` name that is not a
model in the store means "the server's default model"; any other unknown name is a 404.

Like Cohere, the route is strict: the body must be ``application/json`` (else 415), of at most
``ADAPTRANK_MAX_REQUEST_BYTES`` (413, see :mod:`.limits`), and fields keep their JSON types
(``"top_n": "2"`` or ``"return_documents": "yes"`` are 422s, never coerced). Every refusal is a 4xx
JSON ``{"message", "field"}`` naming the field, the value and the limit, and the connection stays
open for the client's next request; only a bug is a 500 (logged, no traceback to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastmcp import FastMCP
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from adaptrank.core import __version__
from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.core.settings import Settings
from adaptrank.core.text import MAX_DEPTH, check_text, check_value, printable
from adaptrank.server.auth import check_bind
from adaptrank.server.context import Services
from adaptrank.server.draining import DrainingServer, InFlight
from adaptrank.server.errors import validation_errors
from adaptrank.server.limits import BodyLimit, BodyTooLarge, match_transport_limit
from adaptrank.server.metrics import HTTPMetrics

log = logging.getLogger(__name__)

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
MCP_PATH = "/mcp"
#: bodies larger than this are parsed in a worker thread, off the event loop
PARSE_IN_THREAD_BYTES = 256 * 1024


class CohereDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: StrictStr


class CohereRerankRequest(BaseModel):
    """Cohere's rerank request; fields Cohere accepts that change nothing here are ignored.
    Types are strict, as Cohere's are: a string is not a number and "yes" is not a boolean."""

    model_config = ConfigDict(extra="ignore")
    query: StrictStr
    documents: list[StrictStr | CohereDocument]
    top_n: StrictInt | None = None
    return_documents: StrictBool = False
    model: StrictStr | None = None


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_error(exc: ValidationError) -> JSONResponse:
    errors = [{"field": f, "message": m} for f, m in validation_errors(exc)]
    first = errors[0]
    return _error(422, f"{first['field']}: {first['message']}", first["field"], errors=errors)


def _authorized(request: Request, settings: Settings) -> bool:
    """The app-wide bearer middleware (installed by the app's fastmcp auth) already judged the token."""
    if not settings.token:
        return True
    return "user" in request.scope and request.user.is_authenticated


def _cohere_model(name: str | None, services: Services) -> str | None:
    if name and name.startswith("rerank-") and name.partition("@")[0] not in services.store.names():
        return None  # a Cohere client's default model name: use ours
    return name or None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _parse_json(body: bytes) -> Any:
    """The JSON value, or an ``InputError`` for invalid or too deeply nested JSON (Python's
    parser would raise ``RecursionError`` on thousands of nested brackets)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InputError("body", f"JSON is nested too deeply; the limit is {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InputError("body", f"not valid JSON ({exc})") from None


async def cohere_rerank(request: Request, services: Services) -> JSONResponse:
    try:
        return await _cohere_rerank(request, services)
    except BodyTooLarge:
        raise  # BodyLimit answers it with the 413
    except Exception:
        log.exception("POST %s failed", request.url.path)
        return _error(500, "internal error (logged on the server)")


async def _cohere_rerank(request: Request, services: Services) -> JSONResponse:
    if not _authorized(request, services.settings):
        return _error(401, "missing or invalid bearer token (send 'Authorization: Bearer <token>')")
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        return _error(415, f"Content-Type: must be application/json (got {content_type[:100]!r})", "Content-Type")
    body = await request.body()
    try:
        payload = await asyncio.to_thread(_parse_json, body) if len(body) > PARSE_IN_THREAD_BYTES else _parse_json(body)
        if isinstance(payload, dict):
            for key, value in payload.items():
                check_text(str(key), f"{printable(str(key))} (a key)")
                check_value(value, printable(str(key)))  # lone surrogates, nesting depth
    except InputError as exc:
        return _error(400, str(exc), exc.field)
    try:
        req = CohereRerankRequest.model_validate(payload)
    except ValidationError as exc:
        return _validation_error(exc)
    documents = [d if isinstance(d, str) else d.model_dump() for d in req.documents]
    try:
        res = await services.reranker.arerank(
            req.query,
            documents,
            top_n=req.top_n,
            model=_cohere_model(req.model, services),
            return_documents=False,
        )
    except InputError as exc:
        return _error(400, str(exc), exc.field)
    except NotFoundError as exc:
        return _error(404, str(exc), exc.field or "model")
    results = []
    for r in res.results:
        item: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
        if req.return_documents:
            doc = documents[r.index]
            item["document"] = {"text": doc} if isinstance(doc, str) else doc
        results.append(item)
    return JSONResponse(
        {
            "id": str(uuid.uuid4()),
            "results": results,
            "meta": {
                "api_version": {"version": "1"},
                "billed_units": {"search_units": 1},
                "model": res.model,
                "model_version": res.version,
            },
        }
    )


def register(mcp: FastMCP, services: Services) -> None:
    """Add the HTTP-only routes to the app (they exist only on the HTTP transport)."""

    async def rerank_route(request: Request) -> JSONResponse:
        return await cohere_rerank(request, services)

    for path in RERANK_PATHS:
        mcp.custom_route(path, methods=["POST"], name=f"rerank{path.replace('/', '_')}")(rerank_route)

    @mcp.custom_route("/healthz", methods=["GET"], name="healthz")
    async def healthz(request: Request) -> JSONResponse:
        """Liveness for load balancers: no auth, no model loading."""
        return JSONResponse({"status": "ok", "version": __version__, "default_model": services.settings.default_model})


def http_app(mcp: FastMCP) -> Starlette:
    """The ASGI app: MCP streamable HTTP at ``/mcp`` plus the routes above.

    Host/Origin checking ("auto") stops DNS-rebinding pages from reaching a loopback-bound server.
    One body limit (``ADAPTRANK_MAX_REQUEST_BYTES``) covers every route, MCP included.
    """
    services = getattr(mcp, "services", None)
    limit = (services.settings if services is not None else Settings()).max_request_bytes
    counting = [Middleware(HTTPMetrics, metrics=services.metrics)] if services is not None else []
    app = mcp.http_app(
        path=MCP_PATH,
        host_origin_protection="auto",
        middleware=[
            *counting,
            Middleware(InFlight, mcp_path=MCP_PATH),
            Middleware(BodyLimit, limit=limit, mcp_path=MCP_PATH),
        ],
    )
    match_transport_limit(app, limit)
    return app


def _inflight(app: Starlette) -> InFlight:
    """The app's InFlight counter (Starlette builds its middleware stack on first use)."""
    node: Any = app.build_middleware_stack() if app.middleware_stack is None else app.middleware_stack
    if app.middleware_stack is None:
        app.middleware_stack = node
    while node is not None:
        if isinstance(node, InFlight):
            return node
        node = getattr(node, "app", None)
    raise RuntimeError("the HTTP app has no InFlight middleware")


def uvicorn_server(mcp: FastMCP, settings: Settings, *, log_level: str = "warning") -> uvicorn.Server:
    """uvicorn for the app; on a stop, running requests finish first (see :mod:`.draining`)."""
    check_bind(settings.host, settings.token)
    app = http_app(mcp)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        lifespan="on",
        # JSON logs: uvicorn's loggers keep no handlers of their own (see .logs)
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=5,  # what is left after draining: idle connections closing
    )
    return DrainingServer(config, app, _inflight(app), settings.graceful_shutdown_seconds)


def serve_http(mcp: FastMCP, settings: Settings, *, log_level: str = "warning") -> None:
    """Serve until interrupted (``adaptrank serve --transport http``)."""
    uvicorn_server(mcp, settings, log_level=log_level).run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(
    mcp: FastMCP, settings: Settings, *, timeout: float = 60.0, log_level: str = "warning"
) -> Iterator[str]:
    """Run the HTTP app on a background thread; yields its base URL and always shuts it down.

    For tests and benchmarks: bind ``settings.host`` (keep it 127.0.0.1) on ``settings.port``
    (0 picks a free port). The socket is bound here, before the thread starts, so the port cannot
    be taken in between.
    """
    check_bind(settings.host, settings.token)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    server = uvicorn_server(mcp, settings.model_copy(update={"port": port}), log_level=log_level)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name="adaptrank-http", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if errors or not thread.is_alive():
                raise RuntimeError(f"HTTP server failed to start: {errors[:1]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"HTTP server did not start within {timeout}s")
            time.sleep(0.02)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()
