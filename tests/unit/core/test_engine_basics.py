"""Engine: validation, result shape, cache, MaxP windows, micro-batching (tiny models)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from adaptrank.core import InputError, Reranker
from adaptrank.core.errors import NotFoundError


@pytest.fixture
def rr(settings, tiny_cross_encoder):
    r = Reranker(f"cross-encoder:{tiny_cross_encoder}", settings=settings)
    yield r
    r.close()


def test_rerank_sorted_with_caller_indices(rr):
    docs = ["alpha beta", {"id": "d1", "text": "gamma delta epsilon", "metadata": {"k": 1}}, "zeta"]
    res = rr.rerank("alpha", docs, top_n=2, return_documents=True)
    assert len(res.results) == 2
    scores = rr.score("alpha", docs)
    order = list(np.argsort(-scores, kind="stable"))
    assert [r.index for r in res.results] == order[:2]
    for r in res.results:
        assert r.score == pytest.approx(scores[r.index])
        assert r.document.text == (docs[r.index] if isinstance(docs[r.index], str) else docs[r.index]["text"])
    by_index = {r.index: r for r in rr.rerank("alpha", docs).results}
    assert by_index[1].id == "d1"


@pytest.mark.parametrize(
    ("query", "docs", "top_n", "field"),
    [
        ("", ["a"], None, "query"),
        ("   ", ["a"], None, "query"),
        ("q", [], None, "documents"),
        ("q", ["a"] * 11, None, "documents"),
        ("q", ["a"], 0, "top_n"),
        ("q", ["a"], 11, "top_n"),
        ("q", ["x" * 101], None, "documents[0].text"),
        ("q", [{"id": "x"}], None, "documents[0]"),
        ("q" * 51, ["a"], None, "query"),
    ],
)
def test_bad_input_names_field_and_limit(tiny_cross_encoder, tmp_path, query, docs, top_n, field):
    from adaptrank.core import Settings

    s = Settings(home=tmp_path, max_documents=10, max_document_chars=100, max_query_chars=50)
    rr = Reranker(f"cross-encoder:{tiny_cross_encoder}", settings=s)
    with pytest.raises(InputError) as exc:
        rr.rerank(query, docs, top_n=top_n)
    assert exc.value.field == field
    assert str(exc.value).startswith(field)


def test_unknown_model_is_not_found(rr):
    with pytest.raises(NotFoundError, match="unknown model"):
        rr.rerank("q", ["a"], model="no-such-model")


def test_cache_serves_repeats_without_forward(rr):
    rr.rerank("q", ["one", "two"])
    misses = rr.cache.misses
    before = rr._get(rr.default_model).batcher.stats.forward_calls
    rr.rerank("q", ["two", "one"])
    assert rr.cache.misses == misses
    assert rr._get(rr.default_model).batcher.stats.forward_calls == before


def test_maxp_scores_long_document_by_best_window(tiny_cross_encoder, settings):
    from adaptrank.core.engine.crossencoder import CrossEncoderScorer

    maxp = CrossEncoderScorer(tiny_cross_encoder, max_length=32, mode="maxp", stride=8)
    long_doc = " ".join(f"word{i}" for i in range(200))
    enc_scores = maxp.score_pairs([("query", long_doc)])
    # The max over windows is at least the score of the first (truncated) window.
    trunc = CrossEncoderScorer(tiny_cross_encoder, max_length=32, mode="truncate")
    assert enc_scores[0] >= trunc.score_pairs([("query", long_doc)])[0] - 1e-6
    from adaptrank.core.engine.tokens import encode_pairs

    enc = encode_pairs(maxp.tokenizer, [("query", long_doc), ("query", "short")], 32, "maxp", 8)
    assert (enc.owner == 0).sum() > 3 and (enc.owner == 1).sum() == 1
    assert max(len(x) for x in enc.input_ids) <= 32


def test_truncate_matches_sentence_transformers_predict(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    from adaptrank.core.engine.crossencoder import CrossEncoderScorer

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    pairs = [
        ("query " + " ".join(rng.choice(words, 3)), " ".join(rng.choice(words, int(n))))
        for n in rng.integers(1, 120, 40)
    ]
    ours = CrossEncoderScorer(tiny_cross_encoder, max_length=64, mode="truncate", batch_tokens=512).score_pairs(pairs)
    ref = CrossEncoder(tiny_cross_encoder, max_length=64).predict(pairs, batch_size=7)
    assert np.max(np.abs(ours - ref)) < 1e-5


def test_concurrent_requests_share_forward_passes(settings, tiny_cross_encoder):
    """Callers in parallel threads are merged into fewer forward calls; each gets its own scores."""
    from adaptrank.core import Settings

    s = Settings(home=settings.home, microbatch_wait_ms=50.0, cache_size=0)
    rr = Reranker(f"cross-encoder:{tiny_cross_encoder}", settings=s)
    expected = {i: rr.scorer().score_pairs([(f"query {i}", f"doc {i} {j}") for j in range(5)]) for i in range(12)}
    barrier = threading.Barrier(12)
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        barrier.wait()
        got[i] = rr.score(f"query {i}", [f"doc {i} {j}" for j in range(5)])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stats = rr._get(rr.default_model).batcher.stats
    assert stats.requests == 12
    assert stats.forward_calls < 12 and stats.largest_merge >= 2
    for i in range(12):
        np.testing.assert_allclose(got[i], expected[i], atol=1e-6)
    rr.close()
