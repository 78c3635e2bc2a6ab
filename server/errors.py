"""Turn adaptrank's deliberate errors into MCP tool errors the caller can read.

``InputError``/``NotFoundError`` messages already name the field and the limit; wrapped tools
re-raise them as fastmcp ``ToolError`` (sent to the client even when internal error details are
masked, and logged without a traceback, since bad input is not a server fault). Anything else
stays an internal error that the app masks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from fastmcp.exceptions import ResourceError, ToolError

from adaptrank.core.errors import AdaptRankError

F = TypeVar("F", bound=Callable[..., Any])


def _wrap(fn: F, error: type[Exception]) -> F:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except AdaptRankError as exc:
                raise error(str(exc)) from None

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AdaptRankError as exc:
            raise error(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def tool_errors(fn: F) -> F:
    """Decorate a tool function (under ``@mcp.tool``) so adaptrank errors reach the caller."""
    return _wrap(fn, ToolError)


def resource_errors(fn: F) -> F:
    """The same for resource functions."""
    return _wrap(fn, ResourceError)
