"""``GET /readyz``: may a load balancer send this server traffic?

``/healthz`` (in :mod:`.http`) is liveness: the process answers. ``/readyz`` checks what serving
needs and answers 200 when all of it works, 503 otherwise, with a JSON body naming what failed:

* ``model`` — the default model is loaded (the first call loads it, so with ``--no-preload`` the
  first probe is slow and later ones are instant);
* ``chroma`` — the Chroma server answers its heartbeat, when ``ADAPTRANK_CHROMA_URL`` is set (the
  embedded store needs no check);
* ``jobs`` — the jobs database can be written (its folder exists or can be made, and a write
  transaction starts).

Like ``/healthz`` it needs no token (load balancers probe without one); with a token set, an
unauthenticated caller learns only the names of the failed checks, not their messages.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from adaptrank.server.context import Services

CHROMA_TIMEOUT = 3.0
JOBS_DB_TIMEOUT = 3.0


def check_model(services: Services) -> str:
    services.reranker.scorer()  # the default model, loaded once
    return f"default model {services.settings.default_model!r} loaded"


def check_chroma(services: Services) -> str | None:
    """None when no Chroma server is configured (nothing to check)."""
    url = services.settings.chroma_url
    if not url:
        return None
    parsed = urlparse(url if "://" in url else f"http://{url}")
    base = f"{parsed.scheme or 'http'}://{parsed.netloc}"
    resp = httpx.get(f"{base}/api/v2/heartbeat", timeout=CHROMA_TIMEOUT)
    resp.raise_for_status()
    return f"Chroma server at {url} answers"


def check_jobs(services: Services) -> str:
    path = services.settings.jobs_db
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=JOBS_DB_TIMEOUT, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # takes the write lock: fails on a read-only file or folder
        db.execute("ROLLBACK")
    finally:
        db.close()
    return f"jobs database {path} is writable"


CHECKS = {"model": check_model, "chroma": check_chroma, "jobs": check_jobs}


async def readiness(services: Services) -> tuple[bool, dict[str, dict[str, Any]]]:
    """``(ready, {check: {"ok", "detail"}})``; every check runs, each in a worker thread."""

    async def run(check) -> dict[str, Any]:
        try:
            detail = await asyncio.to_thread(check, services)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said in the body
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "detail": detail or "not configured"}

    results = await asyncio.gather(*(run(c) for c in CHECKS.values()))
    checks = dict(zip(CHECKS, results, strict=True))
    return all(c["ok"] for c in checks.values()), checks


def register(mcp: FastMCP, services: Services) -> None:
    """``GET /readyz`` (HTTP transport only)."""

    @mcp.custom_route("/readyz", methods=["GET"], name="readyz")
    async def readyz(request: Request) -> JSONResponse:
        from adaptrank.server.http import _authorized

        ready, checks = await readiness(services)
        failed = [name for name, c in checks.items() if not c["ok"]]
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "failed": failed}
        if _authorized(request, services.settings):
            body["checks"] = checks
        return JSONResponse(body, status_code=200 if ready else 503)
