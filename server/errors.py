"""Turn adaptrank's deliberate errors into MCP tool errors the caller can read.

``InputError``/``NotFoundError`` messages already name the field and the limit; wrapped tools
re-raise them as fastmcp ``ToolError`` (sent to the client even when internal error details are
masked, and logged without a traceback, since bad input is not a server fault). Anything else
stays an internal error that the app masks.

Arguments that break the tool's schema fail in pydantic before the tool runs;
:class:`ReadableValidationErrors` rewrites pydantic's multi-line report into the same one-line
``field: message`` form (``documents: List should have at most 1000 items after validation, not
1200``) that the engine and the HTTP route use.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.exceptions import ValidationError as ArgumentError
from fastmcp.server.middleware import Middleware
from pydantic import ValidationError

from adaptrank.core.errors import AdaptRankError

F = TypeVar("F", bound=Callable[..., Any])


def _wrap(fn: F, error: type[Exception]) -> F:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except AdaptRankError as exc:
                raise error(str(exc), log_level=logging.WARNING) from None

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AdaptRankError as exc:
            raise error(str(exc), log_level=logging.WARNING) from None

    return wrapper  # type: ignore[return-value]


def tool_errors(fn: F) -> F:
    """Decorate a tool function (under ``@mcp.tool``) so adaptrank errors reach the caller."""
    return _wrap(fn, ToolError)


def resource_errors(fn: F) -> F:
    """The same for resource functions."""
    return _wrap(fn, ResourceError)


#: Union-branch names pydantic puts into error locations (``documents.0.str``); not field names.
UNION_TAGS = frozenset({"str", "Document", "CohereDocument"})


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _field(loc: tuple) -> str:
    """``('documents', 3, 'Document', 'text')`` -> ``documents[3].text``; a name that is not plain
    (an unknown argument ``""`` or ``"\0"``) is quoted: ``['\x00']``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in UNION_TAGS:
            continue
        elif not _PLAIN.match(str(part)):
            out += f"[{str(part)[:100]!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, message)`` pairs, most useful first.

    For a value that may be a string or an object, pydantic reports a failure for each branch;
    only the deepest is kept (a dict without ``text`` reports ``documents[0].text: Field required``,
    not also ``documents[0]: Input should be a valid string``).
    """
    raw = exc.errors(include_url=False)
    deepest: dict[tuple, int] = {}
    for e in raw:
        stem = tuple(_stem(e["loc"]))
        deepest[stem] = max(deepest.get(stem, 0), len(e["loc"]))
    out: list[tuple[str, str]] = []
    for e in raw:
        item = (_field(e["loc"]), e["msg"])
        if len(e["loc"]) == deepest[tuple(_stem(e["loc"]))] and item not in out:
            out.append(item)
    return out


def _stem(loc: tuple):
    for part in loc:
        if part in UNION_TAGS:
            return
        yield part


def format_validation_error(exc: ValidationError) -> str:
    return "; ".join(f"{field}: {msg}" for field, msg in validation_errors(exc))


class ReadableValidationErrors(Middleware):
    """Schema violations in tool arguments become one-line ``field: message`` tool errors."""

    async def on_call_tool(self, context, call_next):
        try:
            return await call_next(context)
        except ArgumentError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(format_validation_error(exc.__cause__), log_level=logging.WARNING) from None
            raise
