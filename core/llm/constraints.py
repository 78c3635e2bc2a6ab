"""Checking and repairing constrained LLM output: JSON documents against a schema, and choices.

Backends that cannot constrain decoding natively (the embedded CPU model, servers without
structured outputs, MCP sampling) generate freely and then call these: :func:`parse_json`
extracts the first JSON value from chatty output, repairs the usual small-model slips (code
fences, trailing commas, single quotes, Python literals, a truncated tail) and validates it;
:func:`match_choice` maps ``"Yes."`` or ``{"answer": "yes"}`` onto the allowed ``"yes"``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def choice_schema(choices: list[str]) -> dict[str, Any]:
    """The JSON schema a server with structured outputs uses to enforce ``choices``."""
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(choices)}},
        "required": ["answer"],
        "additionalProperties": False,
    }


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def match_choice(text: str, choices: list[str]) -> str | None:
    """The allowed choice ``text`` means, or None.

    Accepts the exact string, case/punctuation variants (``"Yes."``), a JSON object with one
    string value (``{"answer": "yes"}``) and an answer followed by an explanation
    (``"no, because ..."``), but never an answer that mentions two choices first-word-ambiguously.
    """
    if text in choices:
        return text
    stripped = text.strip()
    if stripped.startswith("{"):
        value = extract_json(stripped)
        if isinstance(value, dict) and len(value) >= 1:
            first = next(iter(value.values()))
            if isinstance(first, str):
                return match_choice(first, choices)
    norm = _normalize(stripped)
    by_norm = {_normalize(c): c for c in choices}
    if norm in by_norm:
        return by_norm[norm]
    # "yes, the passage ..." -> "yes": the longest choice that the answer starts with as words
    hits = [c for n, c in by_norm.items() if n and (norm == n or norm.startswith(n + " "))]
    if hits:
        return max(hits, key=len)
    return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the bracket that closes ``text[start]``, respecting strings; None if unclosed."""
    stack, in_str, esc = [], False, False
    pairs = {"{": "}", "[": "]"}
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return i + 1
    return None


def _close_truncated(text: str) -> str:
    """Append the closers a truncated JSON value is missing (and drop a dangling fragment)."""
    stack, in_str, esc = [], False, False
    pairs = {"{": "}", "[": "]"}
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}]" and stack:
            stack.pop()
    if in_str:
        text += '"'
    text = re.sub(r",\s*$", "", text.rstrip())
    return text + "".join(reversed(stack))


def _repairs(candidate: str) -> list[str]:
    fixed = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
    out = [candidate, fixed]
    if '"' not in fixed and "'" in fixed:
        out.append(fixed.replace("'", '"'))
    py = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", fixed)))
    if py != fixed:
        out.append(py)
    return out


def extract_json(text: str) -> Any | None:
    """The first JSON object/array in ``text`` (repaired if needed), or None."""
    if not text:
        return None
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    text = text.strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = _balanced_end(text, start)
    candidate = text[start:end] if end else _close_truncated(text[start:])
    for attempt in _repairs(candidate):
        try:
            return json.loads(attempt)
        except (json.JSONDecodeError, ValueError):
            continue
    return None


@lru_cache(maxsize=64)
def _validator(schema_json: str):
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """The first schema violation as a short message, or None when ``value`` is valid."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def parse_json(text: str, schema: dict[str, Any] | None = None) -> tuple[Any | None, str | None]:
    """``(value, None)`` when ``text`` holds a JSON value valid against ``schema``, else
    ``(None, reason)``."""
    value = extract_json(text)
    if value is None:
        return None, "no JSON value found"
    if schema is not None:
        error = validation_error(value, schema)
        if error:
            return None, error
    return value, None


def canonical_json(value: Any) -> str:
    """How a repaired value is returned to callers: compact, stable JSON text."""
    return json.dumps(value, ensure_ascii=False)
