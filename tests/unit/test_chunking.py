"""Token-aware chunking: spans of the original text, token limits, overlap, word boundaries."""

from __future__ import annotations

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
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # overlap
        assert b.start > a.start  # progress
    no_overlap = chunk_text(TEXT, max_tokens=50, overlap=0)
    for a, b in zip(no_overlap, no_overlap[1:]):
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


# -- issue 13: no dangling separator for untitled passages ----------------------------------------
def test_with_title_never_leaves_a_dangling_separator():
    from adaptrank.core.chunking import with_title

    assert with_title("Inhalers help.", "") == "Inhalers help."
    assert with_title("Inhalers help.", "   ") == "Inhalers help."
    assert with_title("Inhalers help.", None) == "Inhalers help."
    assert with_title("Inhalers help.", " Asthma ") == "Asthma. Inhalers help."
    assert with_title("Uric acid.", "What causes gout?") == "What causes gout? Uric acid."
