"""Question decomposition: the LLM splits a question into sub-questions; rules step in when it fails.

The LLM gets the ``decompose`` template and its JSON schema (``strict=False``: one bad answer in a
batch falls back alone instead of failing the batch). Its answer is accepted only if it
parses, every item is a question-sized string, each sub-question is *grounded* (most of its
content words occur in the original question — a small model that drifts off topic is caught
here), together they *cover* the question (a model that drops a half is caught too), and there
are at least as many as the question's explicit clauses (a model that keeps "…, and how…" whole
is caught as well). Anything else falls back to :func:`rule_split`, which cuts at ``;``, at a ``?`` followed by
more text, and at ``and``/``but``/``also`` when a new clause starts with a question word
("What causes X, and how is Y treated?" -> "What causes X?", "How is Y treated?").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from adaptrank.agents.prompts import DECOMPOSE, decompose_schema, render_decompose
from adaptrank.core.llm.base import LLM, LLMError

Method = Literal["llm", "rule", "caller", "off"]

QUESTION_WORDS = (
    "what|how|why|when|where|which|who|whom|whose|is|are|was|were|can|could|does|do|did|should|"
    "will|would|has|have|in what|to what"
)
_CLAUSE = re.compile(rf",?\s+(?:and|but|also|plus|as well as)\s+(?=(?:{QUESTION_WORDS})\b)", re.IGNORECASE)
_QMARK = re.compile(r"\?\s+(?=\S)")
_WORD = re.compile(r"[a-z0-9]+")
MIN_COVERAGE = 0.6  # share of the question's content words the sub-questions must repeat, together
STOPWORDS = frozenset(
    "the a an of and or to in on for with by at from is are was were be been being it its this that these those "
    "what how why when where which who whom whose do does did can could should would will has have had "
    "about as into than then there their they them i you he she we me my your our".split()
)


@dataclass
class Decomposition:
    question: str
    sub_questions: list[str]
    method: Method
    template: str | None = None  # e.g. "decompose@1" when the LLM was asked
    raw: str | None = None  # the LLM's text, for the trace
    error: str | None = None  # why the LLM answer was rejected (then method == "rule")
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def queries(self) -> list[str]:
        """What to retrieve with: the original question first, then the distinct sub-questions."""
        out = [self.question]
        seen = {_norm(self.question)}
        for q in self.sub_questions:
            if _norm(q) not in seen:
                seen.add(_norm(q))
                out.append(q)
        return out


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _content(text: str) -> list[str]:
    return [w[:5] for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def _tidy(part: str) -> str:
    part = part.strip().strip(",;:.").strip()
    if not part:
        return ""
    part = part[0].upper() + part[1:]
    return part if part.endswith("?") else part.rstrip("?") + "?"


def rule_split(question: str, max_subquestions: int = 4) -> list[str]:
    """Split a compound question at clause boundaries; a simple question comes back alone."""
    parts: list[str] = []
    for piece in re.split(r";", question):
        for sentence in _QMARK.split(piece):
            parts.extend(_CLAUSE.split(sentence))
    subs = [t for t in (_tidy(p) for p in parts) if len(_WORD.findall(t)) >= 2]
    if not subs:
        return [question.strip()]
    if len(subs) > max_subquestions:  # keep the budget: the tail joins the last slot
        subs = subs[: max_subquestions - 1] + [" ".join(subs[max_subquestions - 1 :])]
    return subs


def _extract_json(text: str) -> Any:
    text = text.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the answer")


def parse_subquestions(text: str, question: str, max_subquestions: int, max_chars: int = 300) -> list[str]:
    """The valid, grounded sub-questions of an LLM answer; ``ValueError`` saying why otherwise."""
    data = _extract_json(text)
    items = data.get("sub_questions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError("expected a non-empty 'sub_questions' list")
    original = set(_content(question))
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"sub-question {item!r} is not a non-empty string")
        sub = " ".join(item.split())
        if len(sub) > max_chars or len(_WORD.findall(sub)) < 2:
            raise ValueError(f"sub-question {sub[:60]!r} has a bad length")
        words = _content(sub)
        if words and sum(w in original for w in words) < max(1, (len(words) + 1) // 2):
            raise ValueError(f"sub-question {sub[:60]!r} is not grounded in the question")
        if _norm(sub) not in {_norm(s) for s in out}:
            out.append(sub)
    out = out[:max_subquestions]
    if original:
        covered = set().union(*(_content(s) for s in out))
        share = len(original & covered) / len(original)
        if share < MIN_COVERAGE:
            raise ValueError(f"the sub-questions cover {share:.0%} of the question's content words (< {MIN_COVERAGE:.0%})")
    return out


def decompose(question: str, llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160) -> Decomposition:
    """Sub-questions from the LLM (validated), else from :func:`rule_split`."""
    if llm is None:
        return Decomposition(question, rule_split(question, max_subquestions), "rule")
    prompt, schema = render_decompose(question, max_subquestions)
    try:
        raw = llm.generate([prompt], max_new_tokens=max_new_tokens, temperature=0.0, json_schema=schema, strict=False)[0]
    except LLMError as exc:
        return _fallback(question, max_subquestions, None, f"LLM failed: {exc}")
    return _accept(question, raw, max_subquestions)


def decompose_many(
    questions: list[str], llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160
) -> list[Decomposition]:
    """:func:`decompose` for many questions in ONE batched ``generate`` call (the LLM protocol is
    batch-first: a batch costs about as much as its longest member on the embedded backend)."""
    if llm is None:
        return [Decomposition(q, rule_split(q, max_subquestions), "rule") for q in questions]
    prompts = [render_decompose(q, max_subquestions)[0] for q in questions]
    try:
        raws = llm.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                            json_schema=decompose_schema(max_subquestions), strict=False)
    except LLMError as exc:
        return [_fallback(q, max_subquestions, None, f"LLM failed: {exc}") for q in questions]
    return [_accept(q, raw, max_subquestions) for q, raw in zip(questions, raws, strict=True)]


async def adecompose(
    question: str, llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160
) -> Decomposition:
    if llm is None:
        return Decomposition(question, rule_split(question, max_subquestions), "rule")
    prompt, schema = render_decompose(question, max_subquestions)
    try:
        raw = (
            await llm.agenerate([prompt], max_new_tokens=max_new_tokens, temperature=0.0, json_schema=schema, strict=False)
        )[0]
    except LLMError as exc:
        return _fallback(question, max_subquestions, None, f"LLM failed: {exc}")
    return _accept(question, raw, max_subquestions)


def _accept(question: str, raw: str, max_subquestions: int) -> Decomposition:
    try:
        subs = parse_subquestions(raw, question, max_subquestions)
    except ValueError as exc:
        return _fallback(question, max_subquestions, raw, str(exc))
    explicit = rule_split(question, max_subquestions)
    if len(subs) < len(explicit):  # the question says "…, and how…" yet the LLM kept it whole
        return _fallback(
            question, max_subquestions, raw,
            f"the LLM gave {len(subs)} sub-question(s) for {len(explicit)} explicit clauses",
        )
    return Decomposition(question, subs, "llm", template=DECOMPOSE.id, raw=raw)


def _fallback(question: str, max_subquestions: int, raw: str | None, error: str) -> Decomposition:
    return Decomposition(
        question, rule_split(question, max_subquestions), "rule", template=DECOMPOSE.id, raw=raw, error=error
    )
