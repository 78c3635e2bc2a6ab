"""Token-aware chunking with overlap, shared by ingest (Chroma) and training-data generation.

Why tokens and not characters: every consumer downstream has a token limit — the embedding model
(256 word pieces for MiniLM) and the reranker's ``max_length`` (query + passage). Counting with the
same tokenizer the model uses means a chunk never gets silently truncated.

API::

    from adaptrank.core.chunking import chunk_text, chunk_texts, passage_budget

    chunks = chunk_text(text, max_tokens=200, overlap=40)          # default: the MiniLM tokenizer
    for c in chunks:
        c.index, c.text, c.start, c.end, c.n_tokens                # text == original[start:end]

    # many documents at once (one batched tokenizer call; fast on a whole corpus)
    per_doc = chunk_texts(texts, max_tokens=200, overlap=40)

    # fit a reranker window: max_length minus the query and the special tokens
    budget = passage_budget(max_length=256, query_tokens=32)       # -> 221

Rules: chunks are contiguous spans of the original text (``text[start:end]``, whitespace at the
edges trimmed), at most ``max_tokens`` tokens each; consecutive chunks share about ``overlap``
tokens. A chunk prefers to end at a sentence end (in the last quarter of its window), else at a
word boundary (in the last half), and never starts inside a word. A chunk after the first starts at
the first sentence start inside its overlap with the previous chunk when there is one (else at a
word start, the full overlap). A text that fits is one chunk; an empty text is none.

:func:`with_title` is the one way to prefix a title to a passage (``"<title>. <text>"``, the text
alone when the title is blank).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from adaptrank.core.errors import InputError

SENTENCE_END = ".!?;:\n"
SENTENCE_STOP = ".!?"  # sentence ends: a title ending in one needs no extra period; a chunk may start after one


@dataclass(frozen=True)
class Chunk:
    """One span of a document: ``text == document[start:end]``."""

    index: int  # position in the document's chunk list, from 0
    text: str
    start: int  # character offset in the original text (inclusive)
    end: int  # character offset in the original text (exclusive)
    n_tokens: int


@lru_cache(maxsize=8)
def load_tokenizer(path_or_id: str | None = None) -> Any:
    """A fast (offset-mapping) Hugging Face tokenizer, loaded once per path.

    ``None`` is the offline all-MiniLM-L6-v2 tokenizer, the default embedder's and zero-shot
    scorer's own. Never downloads unless given a hub id on a machine that can reach the hub.
    """
    from transformers import AutoTokenizer

    if path_or_id is None:
        from adaptrank.core.engine.biencoder import default_embedding_path

        path_or_id = default_embedding_path()
    tok = AutoTokenizer.from_pretrained(path_or_id, use_fast=True, trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise InputError("tokenizer", f"{path_or_id} has no fast tokenizer (offset mapping needed for chunking)")
    return tok


def _resolve(tokenizer: Any) -> Any:
    if tokenizer is None or isinstance(tokenizer, str):
        return load_tokenizer(tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("tokenizer", "must be a fast Hugging Face tokenizer (it needs offset mappings)")
    return tokenizer


def _check(max_tokens: int, overlap: int) -> None:
    if max_tokens < 8:
        raise InputError("max_tokens", f"is {max_tokens}; it must be at least 8")
    if not 0 <= overlap < max_tokens // 2 + 1:
        raise InputError("overlap", f"is {overlap}; it must be between 0 and max_tokens/2 ({max_tokens // 2})")


def with_title(text: str, title: str | None) -> str:
    """``"<title>. <text>"``; the text alone when the title is empty or blank (no dangling ``". "``),
    and no extra period after a title that already ends a sentence (``"What is gout? <text>"``)."""
    title = (title or "").strip()
    if not title:
        return text
    return f"{title} {text}" if title[-1] in SENTENCE_STOP else f"{title}. {text}"


def passage_budget(max_length: int, query_tokens: int = 32, special_tokens: int = 3) -> int:
    """Tokens left for a passage in a (query, passage) window of ``max_length``.

    BERT-style pairs spend 3 special tokens ([CLS] q [SEP] p [SEP]).
    """
    budget = max_length - query_tokens - special_tokens
    if budget < 8:
        raise InputError("max_length", f"is {max_length}; it leaves {budget} tokens for a passage after the query")
    return budget


def chunk_text(text: str, max_tokens: int = 200, overlap: int = 40, tokenizer: Any = None) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``max_tokens`` tokens (see module doc).

    ``tokenizer``: ``None`` (offline MiniLM), a path/hub id, or a fast HF tokenizer object.
    """
    return chunk_texts([text], max_tokens, overlap, tokenizer)[0]


def chunk_texts(texts: list[str], max_tokens: int = 200, overlap: int = 40, tokenizer: Any = None) -> list[list[Chunk]]:
    """:func:`chunk_text` for many texts with one batched tokenizer call."""
    _check(max_tokens, overlap)
    tok = _resolve(tokenizer)
    if not texts:
        return []
    enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [
        _split(text, offsets, max_tokens, overlap) for text, offsets in zip(texts, enc["offset_mapping"], strict=True)
    ]


def _split(text: str, offsets: list[tuple[int, int]], max_tokens: int, overlap: int) -> list[Chunk]:
    offsets = [(int(a), int(b)) for a, b in offsets if b > a]
    n = len(offsets)
    if n == 0:
        return []

    def word_start(i: int) -> bool:
        # a token starts a word when whitespace or punctuation separates it from the previous one
        if i == 0 or i >= n:
            return True
        prev_end, start = offsets[i - 1][1], offsets[i][0]
        return start > prev_end or not (text[start].isalnum() and text[prev_end - 1].isalnum())

    def sentence_end(j: int) -> bool:  # may a chunk end right after token j-1?
        if j >= n:
            return True
        end, nxt = offsets[j - 1][1], offsets[j][0]
        return text[end - 1] in SENTENCE_END or "\n" in text[end:nxt]

    def sentence_start(i: int) -> bool:  # does token i start a line, or a capitalised sentence after ". "?
        prev_end, start = offsets[i - 1][1], offsets[i][0]
        gap = text[prev_end:start]
        return "\n" in gap or (bool(gap) and text[prev_end - 1] in SENTENCE_STOP and text[start].isupper())

    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(start + max_tokens, n)
        if end < n:
            # a sentence end in the last quarter of the window, else a word boundary in the last half
            cut = next((j for j in range(end, start + max(1, 3 * max_tokens // 4), -1) if sentence_end(j)), None)
            if cut is None:
                cut = next((j for j in range(end, start + max(1, max_tokens // 2), -1) if word_start(j)), end)
            end = cut
        a, b = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), text[a:b], a, b, end - start))
        if end >= n:
            return chunks
        nxt = max(end - overlap, start + 1)
        while nxt > start + 1 and not word_start(nxt):
            nxt -= 1
        # Why: a chunk read (and retrieved) on its own should not open mid-sentence ("rapid turnover
        # of cells, ..."), so start at the first sentence start inside the overlap. It stays before
        # ``end``: the chunks still overlap and cover the whole text, and the window counts from it.
        start = next((i for i in range(nxt, end) if sentence_start(i)), nxt)
