"""Error types shared by every part. Messages name the field, the value and the limit."""

from __future__ import annotations


class AdaptRankError(Exception):
    """Base class for errors adaptrank raises on purpose (never a bug)."""


class InputError(AdaptRankError, ValueError):
    """The caller's input is invalid; the message says which field and which limit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NotFoundError(AdaptRankError, LookupError):
    """A named thing (model, dataset, collection, job) does not exist."""


class MissingExtraError(AdaptRankError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed. Install it with: pip install 'adaptrank[{extra}]'"
        )
