"""Question understanding: clean the message, then split it only where it asks several things.

1. :func:`~adaptrank.agents.clean.clean_message` drops greetings, thanks, sign-offs and narration
   (rules; the original stays in the trace).
2. Split: the LLM (``decompose`` template and its JSON schema, ``strict=False`` so one bad answer
   in a batch falls back alone) or, without one or when its answer is rejected, :func:`rule_split`,
   which cuts at ``;``, at a ``?`` followed by more text, and at ``and``/``but``/``also`` when a new
   clause starts with a question word ("What causes X, and how is Y treated?" -> "What causes X?",
   "How is Y treated?").
3. Every sub-question must stand alone: :func:`carry_subject` puts the question's subject where a
   later part only points at it ("What causes gout, and how is it treated?" -> "How is gout
   treated?"). An LLM answer is accepted only if it parses, each sub-question is question-sized,
   *grounded* (most of its content words occur in the question), *stands alone* (not only pronouns
   and generic words), together they *cover* the question, and there are at least as many as its
   explicit clauses.
4. One intent -> method ``single``: the message is searched as one cleaned query (most people's
   messages). Two or more -> ``rule`` or ``llm``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from adaptrank.agents.clean import CONTENT_STOP, GENERIC, STOP, Cleaned, clean_message
from adaptrank.agents.prompts import DECOMPOSE, decompose_schema, render_decompose
from adaptrank.core.llm.base import LLM, LLMError
from adaptrank.core.llm.constraints import extract_json

Method = Literal["single", "llm", "rule", "caller", "off"]

QUESTION_WORDS = (
    "what|how|why|when|where|which|who|whom|whose|is|are|was|were|can|could|does|do|did|should|"
    "will|would|has|have|in what|to what"
)
_CLAUSE = re.compile(rf",?\s+(?:and|but|also|plus|as well as)\s+(?=(?:{QUESTION_WORDS})\b)", re.IGNORECASE)
_QMARK = re.compile(r"\?\s+(?=\S)")
_WORD = re.compile(r"[a-z0-9]+")
MIN_COVERAGE = 0.6  # share of the question's content words the sub-questions must repeat, together


@dataclass
class Decomposition:
    question: str  # what the agent searches for as a whole: the cleaned message
    sub_questions: list[str]
    method: Method
    template: str | None = None  # e.g. "decompose@2" when the LLM was asked
    raw: str | None = None  # the LLM's text, for the trace
    error: str | None = None  # why the LLM answer was rejected (then the rules decided)
    removed: list[str] = field(default_factory=list)  # what cleaning took out of the message

    def with_removed(self, removed: list[str]) -> Decomposition:
        self.removed = list(removed)
        return self

    @property
    def queries(self) -> list[str]:
        """What to retrieve with: the (cleaned) question first, then the distinct sub-questions.
        One intent: only the question (an LLM's rewrite of it when one was accepted)."""
        if self.method == "single":
            return [self.sub_questions[0] if self.sub_questions else self.question]
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
    return [w[:5] for w in _WORD.findall(text.lower()) if w not in CONTENT_STOP and len(w) > 1]


def _tidy(part: str) -> str:
    part = part.strip().strip(",;:.").strip()
    if not part:
        return ""
    part = part[0].upper() + part[1:]
    return part if part.endswith("?") else part.rstrip("?") + "?"


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_ASKS = re.compile(rf"^(?:{QUESTION_WORDS})\b", re.IGNORECASE)


def _asks(sentence: str) -> bool:
    s = sentence.strip()
    return s.endswith("?") or bool(_ASKS.match(s))


def rule_split(question: str, max_subquestions: int = 4) -> list[str]:
    """Split a compound question at clause boundaries; a simple question comes back alone.

    Only *questions* become parts: a context sentence ("My brother has it.") stays in the whole
    query but is never a sub-question of its own."""
    parts: list[str] = []
    for piece in re.split(r";", question):
        sentences = _SENTENCE.split(piece.strip())
        asking = [x for x in sentences if _asks(x)]
        for sentence in asking if asking else sentences:
            parts.extend(_CLAUSE.split(sentence))
    subs = [t for t in (_tidy(p) for p in parts) if len(_WORD.findall(t)) >= 2]
    if len(subs) <= 1:
        return [question.strip()]
    if len(subs) > max_subquestions:  # keep the budget: the tail joins the last slot
        subs = [*subs[: max_subquestions - 1], " ".join(subs[max_subquestions - 1 :])]
    return subs


# -- sub-questions that stand alone -----------------------------------------------------------
_STOP5 = frozenset(w[:5] for w in STOP)
_PRONOUNS = frozenset("it its they them their this that these those he she his her him".split())
_LEAD = frozenset(
    (
        "what how why when where which who whom whose is are was were can could does do did should will would "
        "has have had may might the a an causes cause get gets happens happen many much long often people "
        "treat treated i you we my our your"
    ).split()
)
_TRAIL = frozenset(
    (
        "treated diagnosed inherited caused prevented cured managed tested passed down handled detected found "
        "spread transmitted inherit treat diagnose prevent cure manage common rare serious dangerous "
        "contagious hereditary genetic fatal curable"
    ).split()
)
_POINTER = re.compile(
    r"\b(?:(?:this|that|the|these|those)\s+(?:condition|disease|disorder|syndrome|illness|problem|drug|medication|"
    r"medicine|infection|cancer)s?|it|them|they|this|that|these|those)\b",
    re.IGNORECASE,
)
_POSSESSIVE = re.compile(r"\b(?:its|their)\s+([a-z][a-z-]*(?:\s+(?:factors|effects|changes|options))?)", re.IGNORECASE)


def _named(text: str) -> set[str]:
    """Content words that name something (not pronouns, not generic aspect words)."""
    return {w for w in _content(text) if w not in GENERIC and w not in _PRONOUNS and w not in _STOP5}


def subject_of(question: str) -> str | None:
    """The thing a question is about: "What are the treatments for Gout ?" -> "Gout",
    "How is gout treated?" -> "gout". None when it names nothing (a pronoun, generic words)."""
    q = re.sub(r"\([^)]*\)", " ", question).strip().rstrip("?.! ").strip()
    # "<generic words> of|for|by <subject>": the first preposition after which something is named
    for m in re.finditer(r"\b(?:of|for|about|from|with|by|in|to|behind)\s+", q, re.IGNORECASE):
        tail = re.sub(r"^(?:the|a|an|having)\s+", "", q[m.end() :], flags=re.IGNORECASE).strip(" ,")
        if not _named(q[: m.start()]) and _named(tail):
            return tail
    words = q.split()
    while words and words[0].lower().strip(",") in _LEAD:
        words = words[1:]
    while words and words[-1].lower() in _TRAIL:
        words = words[:-1]
    subject = " ".join(words).strip(" ,")
    return subject if _named(subject) else None


def stands_alone(sub: str) -> bool:
    """False for a sub-question that names nothing ("How is it treated?", "What are the symptoms?")."""
    return bool(_named(sub))


def carry_subject(subs: list[str], question: str | None = None) -> list[str]:
    """Later parts that only point at the subject get it back: "How is it treated?" after "What
    causes gout?" -> "How is gout treated?"; "What are its symptoms?" -> "What are the symptoms of
    gout?"; "What are the treatments?" -> "What are the treatments for gout?"."""
    out: list[str] = []
    subject = None
    for sub in subs:
        if stands_alone(sub):
            subject = subject_of(sub) or subject
            out.append(sub)
            continue
        subject = subject or (subject_of(rule_split(question)[0]) if question else None)
        if not subject:
            out.append(sub)
            continue
        fixed = _POSSESSIVE.sub(lambda m, subject=subject: f"the {m.group(1)} of {subject}", sub, count=1)
        if fixed == sub:
            fixed = _POINTER.sub(subject, sub, count=1)
        if fixed == sub:  # names nothing and points at nothing: say what it is about
            body = sub.rstrip("?. ")
            fixed = (
                f"{body} {'for' if re.search(r'treatments?|options|therap', body, re.IGNORECASE) else 'of'} {subject}?"
            )
        out.append(fixed)
    return out


def parse_subquestions(text: str, question: str, max_subquestions: int, max_chars: int = 300) -> list[str]:
    """The valid, grounded, self-contained sub-questions of an LLM answer; ``ValueError`` saying
    why otherwise. A part that only points at its subject gets it carried in first."""
    data = extract_json(text)
    if data is None:
        raise ValueError("no JSON object in the answer")
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
        if set(_content(sub)) not in [set(_content(s)) for s in out]:  # a paraphrase is not a second ask
            out.append(sub)
    out = carry_subject(out[:max_subquestions], question)
    for sub in out:
        if not stands_alone(sub) and stands_alone(question):
            raise ValueError(f"sub-question {sub[:60]!r} does not stand alone (it names nothing)")
    if original:
        covered = set().union(*(_content(s) for s in out))
        share = len(original & covered) / len(original)
        if share < MIN_COVERAGE:
            raise ValueError(
                f"the sub-questions cover {share:.0%} of the question's content words (< {MIN_COVERAGE:.0%})"
            )
    return out


def _clean(question: str, clean: bool) -> Cleaned:
    return clean_message(question) if clean else Cleaned(" ".join(question.split()))


def by_rules(question: str, max_subquestions: int = 4, *, clean: bool = True) -> Decomposition:
    """Clean, split at clause boundaries, carry the subject; one part -> ``single``."""
    c = _clean(question, clean)
    subs = carry_subject(rule_split(c.text, max_subquestions), c.text)
    if len(subs) == 1:
        return Decomposition(c.text, [c.text], "single", removed=c.removed)
    return Decomposition(c.text, subs, "rule", removed=c.removed)


def decompose(
    question: str, llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160, *, clean: bool = True
) -> Decomposition:
    """Sub-questions from the LLM (validated), else from the rules; see the module docstring."""
    return decompose_many([question], llm, max_subquestions, max_new_tokens, clean=clean)[0]


def decompose_many(
    questions: list[str], llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160, *, clean: bool = True
) -> list[Decomposition]:
    """:func:`decompose` for many questions in ONE batched ``generate`` call (the LLM protocol is
    batch-first: a batch costs about as much as its longest member on the embedded backend)."""
    cleaned = [_clean(q, clean) for q in questions]
    if llm is None:
        return [by_rules(c.text, max_subquestions, clean=False).with_removed(c.removed) for c in cleaned]
    prompts = [render_decompose(c.text, max_subquestions)[0] for c in cleaned]
    try:
        raws = llm.generate(
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            json_schema=decompose_schema(max_subquestions),
            strict=False,
        )
    except LLMError as exc:
        return [_fallback(c, max_subquestions, None, f"LLM failed: {exc}") for c in cleaned]
    return [_accept(c, raw, max_subquestions) for c, raw in zip(cleaned, raws, strict=True)]


async def adecompose(
    question: str, llm: LLM | None, max_subquestions: int = 4, max_new_tokens: int = 160, *, clean: bool = True
) -> Decomposition:
    """:func:`decompose` on the event loop (the LLM's ``agenerate``: MCP sampling lives there)."""
    c = _clean(question, clean)
    if llm is None:
        return by_rules(c.text, max_subquestions, clean=False).with_removed(c.removed)
    prompt, schema = render_decompose(c.text, max_subquestions)
    try:
        raw = (
            await llm.agenerate(
                [prompt], max_new_tokens=max_new_tokens, temperature=0.0, json_schema=schema, strict=False
            )
        )[0]
    except LLMError as exc:
        return _fallback(c, max_subquestions, None, f"LLM failed: {exc}")
    return _accept(c, raw, max_subquestions)


def _accept(c: Cleaned, raw: str, max_subquestions: int) -> Decomposition:
    try:
        subs = parse_subquestions(raw, c.text, max_subquestions)
    except ValueError as exc:
        return _fallback(c, max_subquestions, raw, str(exc))
    explicit = rule_split(c.text, max_subquestions)
    if len(subs) < len(explicit):  # the question says "…, and how…" yet the LLM kept it whole
        return _fallback(
            c, max_subquestions, raw, f"the LLM gave {len(subs)} sub-question(s) for {len(explicit)} explicit clauses"
        )
    asked = set(_content(c.text))
    if len(subs) == 1 or len(subs) > len(explicit):
        # a rewrite of one ask may only take words away (cleaning removes, never adds), and a split the
        # rules do not see may only reuse the message's words: a small model copies its examples
        for sub in subs:
            new = [w for w in _content(sub) if w not in asked]
            if new:
                why = f"the LLM's {sub[:60]!r} adds words the message does not use ({', '.join(new[:3])})"
                return _fallback(c, max_subquestions, raw, why)
    method: Method = "single" if len(subs) == 1 else "llm"
    return Decomposition(c.text, subs, method, template=DECOMPOSE.id, raw=raw, removed=c.removed)


def _fallback(c: Cleaned, max_subquestions: int, raw: str | None, error: str) -> Decomposition:
    dec = by_rules(c.text, max_subquestions, clean=False)
    dec.template, dec.raw, dec.error, dec.removed = DECOMPOSE.id, raw, error, c.removed
    return dec
