"""A stop (SIGTERM, Ctrl-C) that lets the requests already running finish.

uvicorn's own graceful shutdown waits for *connections* to close, and cancels everything still
running after ``timeout_graceful_shutdown``. Two things defeat it here: an MCP client keeps a
long-lived SSE stream (``GET /mcp``) open for the whole session, so connections never close by
themselves and every stop ran into the timeout; and when the timeout hit, the rerank requests
still running were cancelled and answered 500. An operator's restart must not fail requests.

:class:`DrainingServer` stops in this order: stop accepting connections and end keep-alive on the
open ones (as uvicorn does); wait until no request is running (counted by :class:`InFlight`; the
SSE listening streams do not count), up to ``graceful_shutdown_seconds``; end the MCP sessions,
which closes their streams; then uvicorn's shutdown proceeds with nothing left to wait for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)


class InFlight:
    """ASGI middleware counting the HTTP requests being served (not MCP's SSE listening streams)."""

    def __init__(self, app: ASGIApp, mcp_path: str = "/mcp") -> None:
        self.app = app
        self.mcp_path = mcp_path
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listening = (
            scope["type"] == "http"
            and scope.get("method") == "GET"
            and scope.get("path", "").rstrip("/") == self.mcp_path
        )
        if scope["type"] != "http" or listening:
            await self.app(scope, receive, send)
            return
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1


async def end_mcp_sessions(app: Any) -> int:
    """Terminate every streamable-HTTP MCP session (their streams close; clients reconnect to the
    next server). fastmcp's own lifespan does the same, but only after uvicorn's wait."""
    from adaptrank.server.limits import _session_managers

    ended = 0
    for manager in _session_managers(app):
        for transport in list(getattr(manager, "_server_instances", {}).values()):
            try:
                await transport.terminate()
                ended += 1
            except Exception:
                log.debug("ending an MCP session failed", exc_info=True)
    return ended


class DrainingServer(uvicorn.Server):
    """uvicorn, stopping as the module docstring says. ``inflight`` is the app's :class:`InFlight`."""

    def __init__(self, config: uvicorn.Config, app: Any, inflight: InFlight, grace: float) -> None:
        super().__init__(config)
        self.starlette_app = app
        self.inflight = inflight
        self.grace = grace

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        deadline = time.monotonic() + self.grace
        while self.inflight.count > 0 and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.inflight.count:
            log.warning("stopping with %d request(s) still running after %.0f s", self.inflight.count, self.grace)
        await end_mcp_sessions(self.starlette_app)
        await super().shutdown(sockets)
