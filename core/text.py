"""Checks on caller text that the engine and every route share, and the one text hash.

JSON may carry a lone surrogate (``"\\ud800"``): Python decodes it into a ``str`` that cannot be
encoded as UTF-8, so the tokenizer, Chroma, hashing and the JSON response would all fail on it
deep inside the server. It is the caller's bad input, so it is refused up front, naming the field
and the position. Free-form values (metadata) are also bounded in depth, so a deeply nested
value cannot exhaust the recursion limit of whatever serializes it later.
"""

from __future__ import annotations

import hashlib
from typing import Any

from adaptrank.core.errors import InputError

MAX_DEPTH = 32
"""How deeply free-form values (document metadata) may nest."""


def text_key(text: str) -> bytes:
    """A short hash of a text (lone surrogates included, so any str is a key): cache keys and
    duplicate detection."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def check_text(value: str, field: str) -> str:
    """``value`` if it is valid Unicode (UTF-8 encodable), else an ``InputError`` naming where."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InputError(
            field,
            f"contains a lone surrogate {bad!r} (U+{ord(bad):04X}) at character {exc.start}; "
            "text must be valid Unicode",
        ) from None
    return value


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes: safe to put into a message."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_value(value: Any, field: str, max_depth: int = MAX_DEPTH) -> Any:
    """Every string (keys too) in a JSON-like value is valid Unicode and it nests at most
    ``max_depth`` levels. Iterative, so the check itself cannot hit the recursion limit."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                raise InputError(where, f"is nested more than {max_depth} levels deep; the limit is {max_depth}")
            if isinstance(item, dict):
                for k, v in item.items():
                    key = printable(str(k))
                    check_text(str(k), f"{where}.{key} (a key)")
                    stack.append((v, f"{where}.{key}", depth + 1))
            else:
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
    return value
