"""Optional bearer-token auth for the HTTP transport, and the rule that guards non-loopback binds.

The token (``--token`` / ``ADAPTRANK_TOKEN``) is checked by a fastmcp ``TokenVerifier`` given to
the app as its ``auth``: fastmcp then installs Starlette's authentication middleware on the whole
HTTP app and answers unauthenticated MCP requests with 401 + ``WWW-Authenticate: Bearer``. The
Cohere route reads the same verdict from ``request.user`` (see :mod:`.http`), so one check covers
both endpoints. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket

from fastmcp.server.auth import AccessToken, TokenVerifier

from adaptrank.core.errors import InputError


class StaticBearerToken(TokenVerifier):
    """Accepts exactly one shared secret (an API-key style deployment, no OAuth server)."""

    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            raise InputError("token", "must be a non-empty string")
        super().__init__()
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="adaptrank", scopes=[])
        return None


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose the server beyond this machine without a token."""
    if not token and not is_loopback(host):
        raise InputError(
            "host",
            f"refusing to listen on {host!r} (not a loopback address) without a bearer token: "
            "set ADAPTRANK_TOKEN or pass --token, or bind 127.0.0.1",
        )
