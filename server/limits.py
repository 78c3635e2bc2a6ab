"""One request-size limit for every HTTP route, MCP included, with an error that names it.

``ADAPTRANK_MAX_REQUEST_BYTES`` bounds the body of every request (``/v1/rerank`` and ``/mcp``
alike). It is sized so that any request within the documented character limits fits
(``Settings``: 1,000,000 characters of documents take at most 12 MB as JSON), so the transport
never refuses a request the documentation allows. A larger body is answered with **413** and a
message naming the size, the limit and the setting, before any of it is parsed: JSON
``{"message", "field": "body"}`` on the Cohere routes, a JSON-RPC error on ``/mcp``.

The MCP SDK has its own, fixed 4 MiB limit inside the streamable-HTTP session manager (fastmcp
builds the manager without passing one), which would make ``/mcp`` refuse requests the limits
allow, with a bare "Request body too large". :func:`match_transport_limit` raises it to the same
setting once the app has started, so there is one limit and one message.

Before answering 413 the rest of an oversized body is read and dropped (up to ``DRAIN_BYTES`` and
``DRAIN_SECONDS``): closing a socket with unread data makes the kernel send a reset, and the client
would see "connection reset" instead of the 413. A body drained to its end keeps the connection
open for the client's next request; a bigger or slower one gets ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SETTING = "ADAPTRANK_MAX_REQUEST_BYTES"
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 10.0


class BodyTooLarge(Exception):
    """Raised from ``receive`` past the limit; the middleware turns it into the 413. Handlers
    that catch everything must let it through."""

    def __init__(self, size: int, complete: bool) -> None:
        self.size = size
        self.complete = complete  # the message that broke the limit was the body's last


def too_large_message(size: int | None, limit: int) -> str:
    """``size`` from Content-Length; None for a streamed body (only "more than the limit" is known)."""
    got = f"is {size} bytes" if size is not None else f"is more than {limit} bytes"
    return f"body: {got}; the limit is {limit} bytes ({SETTING})"


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with a 413 that names it."""

    def __init__(self, app: ASGIApp, limit: int, mcp_path: str = "/mcp") -> None:
        self.app = app
        self.limit = limit
        self.mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            drained = await _drain(receive)
            await self._refuse(scope, send, int(declared), keep_alive=drained)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(received, complete=not message.get("more_body", False))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            drained = exc.complete or await _drain(receive)
            await self._refuse(scope, send, None, keep_alive=drained)

    async def _refuse(self, scope: Scope, send: Send, size: int | None, keep_alive: bool) -> None:
        message = too_large_message(size, self.limit)
        if scope.get("path", "").rstrip("/") == self.mcp_path:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
        else:
            body = {"message": message, "field": "body"}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if not keep_alive:  # the rest of the body was not read: this connection cannot carry another request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _drain(receive: Receive) -> bool:
    """Read and drop the rest of a request body; True if it ended within the byte and time caps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    dropped = 0
    while dropped <= DRAIN_BYTES:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            return False
        if message["type"] != "http.request":
            return False  # the client went away
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def _session_managers(app: Any, seen: set[int] | None = None) -> list[Any]:
    """Streamable-HTTP session managers reachable from the app's routes (through auth wrappers)."""
    seen = seen if seen is not None else set()
    found = []
    for route in getattr(app, "routes", []):
        node = getattr(route, "app", None) or getattr(route, "endpoint", None)
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            manager = getattr(node, "session_manager", None)
            if manager is not None:
                found.append(manager)
                break
            node = getattr(node, "app", None)
    return found


def match_transport_limit(app: Starlette, limit: int) -> None:
    """After startup, give the MCP SDK's streamable-HTTP body check the same limit as ours."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            managers = _session_managers(app)
            for manager in managers:
                checker = getattr(manager, "asgi_app", None)
                if checker is not None and hasattr(checker, "max_body_size"):
                    checker.max_body_size = limit
                    manager.max_request_body_size = limit
                else:
                    log.warning("MCP transport body limit not found; /mcp keeps the SDK's own limit")
            if not managers:
                log.warning("no MCP session manager found; /mcp keeps the SDK's own body limit")
            yield state

    app.router.lifespan_context = lifespan
