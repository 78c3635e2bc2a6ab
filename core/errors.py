"""Error types shared by every part. Messages name the field, the value and the limit."""

from __future__ import annotations

import errno

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
        super().__init__(f"{field}: {message}")


class NotFoundError(AdaptRankError, LookupError):
    """A named thing (model, dataset, collection, job) does not exist."""


class Cancelled(AdaptRankError):
    """The caller cancelled a long run (a job, a generation, a fine-tuning); finished work stays in
    its checkpoint and nothing half-made is written. Jobs end in state ``cancelled``."""


class MissingExtraError(AdaptRankError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed. Install it with: pip install 'adaptrank[{extra}]'"
        )
