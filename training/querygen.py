"""Query generation: k search questions per document from named templates, batched, cleaned.

For each document, ``k`` queries are spread over its passages (first passages first); each gets a
*question type* chosen to suit the passage (``core.prompts.pick_question_types``: types whose cue
words occur in the passage first, then the set's defaults), so one document yields different
questions instead of k paraphrases. Prompts for a whole batch of documents go to the LLM in ONE
``generate`` call, which the backend batches.

Cleaning (:func:`clean_query`) turns small-model output into a query or a reason to drop it:
chatter (``Sure! Here is a question: ...``, ``A patient might ask, "..."``), numbering, quotes
and labels are stripped and only the first question kept; then length bounds, no "the passage"
references, no copying the passage (word-trigram overlap), grounding (the query's corpus-rare
words must come from the passage: no entities copied from few-shot examples, no contentless
"the condition" questions; :class:`Grounding`), specificity (the passage, not only its subject,
answers it: :class:`~adaptrank.training.specificity.Specificity`), and deduplication within the document
(near-duplicates too) and across the run (exact, after normalization). Every drop is counted by
reason for the dataset card.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLM
from adaptrank.core.llm.constraints import parse_json
from adaptrank.core.prompts import (
    QUERYGEN_FOCUSED,
    QUERYGEN_LIST,
    QUERYGEN_TYPED,
    TYPE_SETS,
    get_template,
    pick_question_types,
    querygen_focused_prompt,
    querygen_list_prompt,
    querygen_typed_prompt,
)
from adaptrank.training.corpus import CorpusPassage
from adaptrank.training.specificity import Specificity

QUERY_TEMPLATES = (QUERYGEN_FOCUSED.name, QUERYGEN_TYPED.name, QUERYGEN_LIST.name)


@dataclass
class GeneratedQuery:
    query: str
    passage_id: str
    doc_id: str
    query_type: str | None
    template: str


@dataclass
class CleanLimits:
    min_words: int = 3
    max_words: int = 40
    max_chars: int = 300
    max_copy_overlap: float = 0.75  # share of the query's word trigrams found in the passage
    near_duplicate: float = 0.85  # word-set Jaccard within one document


_WORD = re.compile(r"[a-z0-9]+")
_QUOTED = re.compile(r"[\"“”']([^\"“”]{8,}\?)[\"“”']")
_LABEL = re.compile(r"^\s*(?:\d+\s*[.)\-:]|[-*•]|(?:question|query|q)\s*\d*\s*[:.)\-])\s*", re.I)
_CHATTER = re.compile(
    r"^(?:sure|here|okay|ok|certainly|of course|a (?:user|patient|person|reader)[^:]{0,40})\b[^:]{0,60}:\s*", re.I
)
_PASSAGE_REF = re.compile(r"\b(?:the|this|that|above|given)\s+(?:passage|text|article|paragraph|excerpt)\b", re.I)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    return " ".join(words(text))


def _trigrams(tokens: list[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)}


def strip_chatter(text: str) -> str:
    """The bare query inside typical small-model wrapping."""
    text = (text or "").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    if len(lines) > 1 and not re.search(r"[a-z]", _CHATTER.sub("", line), re.I):
        line = lines[1]  # "Here is a question:" on its own line
    quoted = _QUOTED.search(line)
    if quoted:
        line = quoted.group(1)
    line = _CHATTER.sub("", line)
    line = _LABEL.sub("", line)
    line = line.strip().strip("\"'`“”*_ ").strip()
    if "?" in line:
        line = line[: line.index("?") + 1]
    return re.sub(r"\s+", " ", line).strip()


class Grounding:
    """Is a query about *this* passage? Small models copy entities from few-shot examples
    ("...Marfan syndrome?" for a passage on acatalasemia) or write contentless questions ("What
    are the symptoms of the condition?"). A query is grounded when at least one of its *specific*
    words — words in at most ``max(rare_share * N, min_df)`` of the corpus's N passages, or in
    none — occurs in the passage. (On medquad-dev's 200-document benchmark sample this dropped
    all 7 copied few-shot entities and the contentless "the condition" questions.)
    """

    def __init__(self, texts: Sequence[str], rare_share: float = 0.05, min_df: int = 5) -> None:
        self.df: Counter = Counter()
        for t in texts:
            self.df.update(set(words(t)))
        self.limit = max(rare_share * len(texts), min_df)

    def specific(self, query: str) -> list[str]:
        from bm25s.stopwords import STOPWORDS_EN

        stop = set(STOPWORDS_EN)
        return [
            w
            for w in dict.fromkeys(words(query))
            if (len(w) > 2 or (len(w) == 2 and any(c.isdigit() for c in w)))
            and w not in stop
            and self.df[w] <= self.limit
        ]

    def __call__(self, query: str, passage: str) -> bool:
        in_passage = set(words(passage))
        return any(w in in_passage for w in self.specific(query))


def clean_query(
    text: str, passage: str, limits: CleanLimits | None = None, grounding: Grounding | None = None
) -> tuple[str | None, str | None]:
    """``(query, None)`` or ``(None, reason)``; reasons: empty, too_short, too_long,
    refers_to_passage, copies_passage, not_grounded (with a ``grounding`` check)."""
    limits = limits or CleanLimits()
    query = strip_chatter(text)
    tokens = words(query)
    if not tokens:
        return None, "empty"
    if len(tokens) < limits.min_words:
        return None, "too_short"
    if len(tokens) > limits.max_words or len(query) > limits.max_chars:
        return None, "too_long"
    if _PASSAGE_REF.search(query):
        return None, "refers_to_passage"
    grams = _trigrams(tokens)
    if len(grams) >= 3:
        shared = len(grams & _trigrams(words(passage))) / len(grams)
        if shared >= limits.max_copy_overlap:
            return None, "copies_passage"
    if grounding is not None and not grounding(query, passage):
        return None, "not_grounded"
    return query, None


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def plan_queries(
    passages: Sequence[CorpusPassage], k: int, type_set: str = "general", offset: int = 0
) -> list[tuple[CorpusPassage, str]]:
    """``k`` (passage, question type) pairs for one document's passages."""
    if not passages:
        return []
    per_passage: dict[int, int] = Counter(i % len(passages) for i in range(k))
    plan = []
    for i, n in sorted(per_passage.items()):
        for qtype in pick_question_types(passages[i].text, n, type_set, offset=offset + i):
            plan.append((passages[i], qtype))
    return plan


def generate_queries(
    llm: LLM,
    documents: Sequence[Sequence[CorpusPassage]],
    k: int,
    *,
    template: str = QUERYGEN_TYPED.name,
    type_set: str = "general",
    limits: CleanLimits | None = None,
    seen: set[str] | None = None,
    doc_offsets: Sequence[int] | None = None,
    temperature: float = 0.0,
    grounding: Grounding | None = None,
    examples: tuple[tuple[str, str], ...] | None = None,
    specificity: Specificity | None = None,
) -> tuple[list[GeneratedQuery], Counter]:
    """Queries for a batch of documents (each a list of its passages), in document order.

    ``seen`` (normalized queries already kept this run) is updated in place, so duplicates
    across batches are dropped too. Returns the queries and a Counter of outcomes (``prompts``,
    ``kept`` and one key per drop reason, ``invalid_output`` for unparseable JSON replies).
    """
    if k < 1:
        raise InputError("queries_per_document", f"is {k}; it must be at least 1")
    if type_set not in TYPE_SETS:
        raise InputError("question_types", f"{type_set!r} is not one of {sorted(TYPE_SETS)}")
    tpl = get_template(template)
    if tpl.name not in QUERY_TEMPLATES:
        raise InputError("template", f"{template!r} is not a query template (known: {list(QUERY_TEMPLATES)})")
    if examples:
        # A query log's (passage, query) pairs show the log's style; they need the focused format
        # (a passage in, its question out), whatever the template was.
        tpl = replace(QUERYGEN_FOCUSED, examples=tuple(examples), version=QUERYGEN_FOCUSED.version + "+log")
    seen = set() if seen is None else seen
    counts: Counter = Counter()
    offsets = list(doc_offsets) if doc_offsets is not None else list(range(len(documents)))

    # raw[d] = list of (passage, qtype or None, raw text)
    raw: list[list[tuple[CorpusPassage, str | None, str]]] = [[] for _ in documents]
    if tpl.name == QUERYGEN_FOCUSED.name:
        # No imposed type: each passage's own main question. A passage's first query is greedy;
        # further ones (k > passages) are sampled, one round per extra query, and dedupe drops repeats.
        shares = [Counter(i % len(ps) for i in range(k)) if ps else Counter() for ps in documents]
        for r in range(max((max(sh.values(), default=0) for sh in shares), default=0)):
            flat_f = [(d, documents[d][i]) for d, sh in enumerate(shares) for i, n in sorted(sh.items()) if n > r]
            prompts = [querygen_focused_prompt(p.text, template=tpl) for _, p in flat_f]
            counts["prompts"] += len(prompts)
            texts = (
                llm.generate(
                    prompts,
                    temperature=temperature if r == 0 else max(temperature, 0.8),
                    seed=r,
                    **tpl.generate_kwargs(),
                )
                if prompts
                else []
            )
            for (d, p), text in zip(flat_f, texts, strict=True):
                raw[d].append((p, None, text))
    elif tpl.name == QUERYGEN_TYPED.name:
        plans = [plan_queries(ps, k, type_set, off) for ps, off in zip(documents, offsets, strict=True)]
        flat = [(d, p, t) for d, plan in enumerate(plans) for p, t in plan]
        prompts = [querygen_typed_prompt(p.text, t) for _, p, t in flat]
        counts["prompts"] += len(prompts)
        texts = llm.generate(prompts, temperature=temperature, **tpl.generate_kwargs()) if prompts else []
        for (d, p, t), text in zip(flat, texts, strict=True):
            raw[d].append((p, t, text))
    else:
        flat_list = []
        for d, ps in enumerate(documents):
            share = Counter(i % len(ps) for i in range(k)) if ps else {}
            for i, n in sorted(share.items()):
                types = pick_question_types(ps[i].text, max(n, 3), type_set, offset=offsets[d] + i)
                flat_list.append((d, ps[i], n, types))
        prompts = [querygen_list_prompt(p.text, n, types) for _, p, n, types in flat_list]
        counts["prompts"] += len(prompts)
        texts = llm.generate(prompts, temperature=temperature, strict=False, **tpl.generate_kwargs()) if prompts else []
        for (d, p, n, _), text in zip(flat_list, texts, strict=True):
            value, error = parse_json(text, tpl.json_schema)
            if error is not None:
                counts["invalid_output"] += 1
                continue
            for item in value["queries"][:n]:
                raw[d].append((p, str(item.get("type") or "") or None, item["query"]))

    out: list[GeneratedQuery] = []
    for items in raw:
        kept_words: list[set[str]] = []
        for passage, qtype, text in items:
            query, reason = clean_query(text, passage.text, limits, grounding)
            if query is not None and specificity is not None:
                verdict = specificity.verdict(query, passage.id)
                if verdict is not None:
                    query, reason = None, verdict
            if query is None:
                counts[reason] += 1
                continue
            norm = normalize(query)
            ws = set(norm.split())
            if norm in seen or any(
                _jaccard(ws, other) >= (limits or CleanLimits()).near_duplicate for other in kept_words
            ):
                counts["duplicate"] += 1
                continue
            seen.add(norm)
            kept_words.append(ws)
            out.append(GeneratedQuery(query, passage.id, passage.doc_id, qtype, tpl.id))
            counts["kept"] += 1
    return out, counts
