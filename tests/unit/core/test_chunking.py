"""Token-aware chunking: spans of the original text, token limits, overlap, word boundaries."""

from __future__ import annotations

import itertools
import re

import pytest

from adaptrank.core.chunking import chunk_text, chunk_texts, load_tokenizer, passage_budget
from adaptrank.core.errors import InputError

TEXT = " ".join(
    f"Sentence number {i} talks about hypophosphatasia and acetylcholinesterase in detail." for i in range(40)
)


def test_chunks_are_spans_within_the_token_limit():
    tok = load_tokenizer()
    chunks = chunk_text(TEXT, max_tokens=50, overlap=10)
    assert len(chunks) > 3
    for i, c in enumerate(chunks):
        assert c.index == i
        assert TEXT[c.start : c.end] == c.text
        assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= 50
        assert c.n_tokens <= 50
    assert chunks[0].start == 0 and chunks[-1].end == len(TEXT)


def test_consecutive_chunks_overlap_and_cover_everything():
    chunks = chunk_text(TEXT, max_tokens=50, overlap=10)
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # overlap
        assert b.start > a.start  # progress
    no_overlap = chunk_text(TEXT, max_tokens=50, overlap=0)
    for a, b in itertools.pairwise(no_overlap):
        assert b.start >= a.end


def test_chunks_prefer_sentence_ends_and_never_start_mid_word():
    short_sentences = " ".join(f"Gout flare {i} hurts." for i in range(60))  # ~6 tokens each
    assert all(c.text.endswith(".") for c in chunk_text(short_sentences, max_tokens=50, overlap=10))
    chunks = chunk_text(TEXT, max_tokens=50, overlap=10)
    for c in chunks[1:]:
        assert c.start == 0 or not TEXT[c.start - 1].isalnum()  # "hypophosphatasia" is several word pieces


def test_short_and_empty_texts():
    assert chunk_text("", 50, 10) == []
    assert chunk_text("   \n ", 50, 10) == []
    (only,) = chunk_text("  A short note.  ", 50, 10)
    assert only.text == "A short note." and only.start == 2


def test_long_word_without_boundaries_still_progresses():
    text = "x" * 3000  # one huge "word": falls back to hard token cuts
    chunks = chunk_text(text, max_tokens=20, overlap=5)
    assert chunks[-1].end == len(text)
    assert all(c.n_tokens <= 20 for c in chunks)


def test_batched_matches_single():
    texts = [TEXT, "tiny", TEXT[:300]]
    assert chunk_texts(texts, 40, 8) == [chunk_text(t, 40, 8) for t in texts]


def test_bad_arguments_name_the_field():
    with pytest.raises(InputError, match="max_tokens"):
        chunk_text(TEXT, max_tokens=2)
    with pytest.raises(InputError, match="overlap"):
        chunk_text(TEXT, max_tokens=40, overlap=30)
    with pytest.raises(InputError, match="max_length"):
        passage_budget(20, query_tokens=16)
    assert passage_budget(256, 32) == 221


# -- chunks start at a sentence start; no dangling separator for untitled passages ---------

# sentences of uneven length (5 to 20 tokens), so chunk windows end and overlaps fall mid-sentence
WORDS = [
    "uric",
    "acid",
    "crystals",
    "form",
    "in",
    "the",
    "joint",
    "and",
    "cause",
    "sudden",
    "severe",
    "pain",
    "with",
    "redness",
    "and",
    "swelling",
]
MIXED = " ".join(f"Case {i} " + " ".join(WORDS[: 2 + (i * 7) % 15]) + "." for i in range(80))
SENTENCE_START = re.compile(r"[.!?]\s+[A-Z]")


def _starts_a_sentence(text: str, at: int) -> bool:
    return at == 0 or (text[at].isupper() and bool(re.search(r"[.!?]\s+$", text[:at])))


def test_later_chunks_start_at_a_sentence_start_within_the_overlap():
    tok = load_tokenizer()
    chunks = chunk_text(MIXED, max_tokens=50, overlap=24)
    assert len(chunks) > 5
    assert chunks[0].start == 0 and chunks[-1].end == len(MIXED)
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start < a.end  # progress, overlap, so no text lost between chunks
        assert len(tok(b.text, add_special_tokens=False)["input_ids"]) <= 50 and b.n_tokens <= 50
        # the longest sentence is 21 tokens, so a sentence starts inside every 24-token overlap
        assert _starts_a_sentence(MIXED, b.start), b.text[:60]


def test_sentence_starts_win_only_when_inside_the_overlap():
    """Either a chunk starts a sentence, or no sentence starts anywhere in its overlap."""
    for max_tokens, overlap in [(40, 6), (50, 10), (40, 12), (60, 20), (30, 4)]:
        chunks = chunk_text(MIXED, max_tokens=max_tokens, overlap=overlap)
        for a, b in itertools.pairwise(chunks):
            assert b.start < a.end
            assert _starts_a_sentence(MIXED, b.start) or not SENTENCE_START.search(MIXED[b.start : a.end])


def test_no_sentence_boundary_keeps_the_full_overlap():
    tok = load_tokenizer()
    # one-token words, commas and lowercase after periods: no sentence start anywhere but the first
    text = ", ".join(f"alpha beta gamma. delta epsilon {i % 10}" for i in range(80))
    chunks = chunk_text(text, max_tokens=40, overlap=10)
    assert len(chunks) > 3 and chunks[-1].end == len(text)
    for a, b in itertools.pairwise(chunks):
        assert len(tok(text[b.start : a.end], add_special_tokens=False)["input_ids"]) == 10


def test_with_title_never_leaves_a_dangling_separator():
    from adaptrank.core.chunking import with_title

    assert with_title("Inhalers help.", "") == "Inhalers help."
    assert with_title("Inhalers help.", "   ") == "Inhalers help."
    assert with_title("Inhalers help.", None) == "Inhalers help."
    assert with_title("Inhalers help.", " Asthma ") == "Asthma. Inhalers help."
    assert with_title("Uric acid.", "What causes gout?") == "What causes gout? Uric acid."
