"""The residual scorer at step 0 ranks exactly like the zero-shot default (scores scaled by 1/tau),
whether its correction is an untrained query tower or a zero-headed cross-encoder."""

from __future__ import annotations

import numpy as np
import pytest

PAIRS = [
    ("what causes gout", "Gout is caused by uric acid crystals in the joints."),
    ("what causes gout", "Paris is the capital of France."),
    ("symptoms of flu", "Flu symptoms include fever and cough."),
    ("symptoms of flu", "Gout is caused by uric acid crystals in the joints."),
]
TAU = 0.05


def _zero_shot(settings):
    from adaptrank.core.engine import Reranker

    return Reranker(settings=settings).scorer("zero-shot").score_pairs(PAIRS)


def test_prior_only_equals_zero_shot_over_tau(settings, tiny_zero_shot):
    from adaptrank.core.engine.biencoder import load_sentence_transformer
    from adaptrank.core.engine.residual import ResidualScorer

    scorer = ResidualScorer(load_sentence_transformer(tiny_zero_shot), tau=TAU)
    np.testing.assert_allclose(scorer.score_pairs(PAIRS), _zero_shot(settings) / TAU, rtol=1e-5, atol=1e-5)
    again = scorer.score_pairs(PAIRS)  # passages now come from the embedding cache
    np.testing.assert_allclose(again, _zero_shot(settings) / TAU, rtol=1e-5, atol=1e-5)


def _store_residual(settings, name, extra, write):
    from adaptrank.core.modelstore import ModelStore

    store = ModelStore(settings.models_dir)
    with store.writing(name, {"backend": "residual", "extra": {"residual": extra}}, version="v1") as d:
        write(d)
    store.activate(name, "v1")


def test_untrained_query_tower_from_the_store_equals_zero_shot(settings, tiny_zero_shot):
    from sentence_transformers import SentenceTransformer

    from adaptrank.core.engine import Reranker

    extra = {"prior": "zero-shot", "tau": TAU, "query_encoder": "query_encoder", "cross_encoder": None}
    _store_residual(
        settings, "res-q", extra, lambda d: SentenceTransformer(tiny_zero_shot).save(str(d / "query_encoder"))
    )
    rr = Reranker(settings=settings)
    assert rr.scorer("res-q").backend == "residual"
    np.testing.assert_allclose(rr.scorer("res-q").score_pairs(PAIRS), _zero_shot(settings) / TAU, rtol=1e-5, atol=1e-5)


def test_zero_headed_cross_encoder_correction_equals_zero_shot(settings, tiny_zero_shot, tiny_cross_encoder):
    from sentence_transformers import CrossEncoder
    from torch import nn

    from adaptrank.core.engine import Reranker
    from adaptrank.training.residual import zero_head

    def write(d):
        ce = CrossEncoder(tiny_cross_encoder, num_labels=1, activation_fn=nn.Identity())
        zero_head(ce)
        ce.save(str(d / "cross_encoder"))

    extra = {"prior": "zero-shot", "tau": TAU, "query_encoder": None, "cross_encoder": "cross_encoder"}
    _store_residual(settings, "res-ce", extra, write)
    got = Reranker(settings=settings).scorer("res-ce").score_pairs(PAIRS)
    np.testing.assert_allclose(got, _zero_shot(settings) / TAU, rtol=1e-5, atol=1e-5)
    order_zs = np.argsort(-_zero_shot(settings)[:2])
    assert list(np.argsort(-got[:2])) == list(order_zs)


def test_a_card_without_residual_parts_is_a_clear_error(settings):
    from adaptrank.core.engine import Reranker
    from adaptrank.core.errors import NotFoundError

    _store_residual(settings, "res-bad", {"prior": "zero-shot", "query_encoder": "missing"}, lambda d: None)
    with pytest.raises(NotFoundError, match="query encoder 'missing' is missing"):
        Reranker(settings=settings).scorer("res-bad")


def test_scorers_of_one_passage_tower_embed_each_passage_once(settings, tiny_zero_shot):
    """The zero-shot bi-encoder and a query-encoder version on the same frozen prior share passage
    vectors (core/engine/cache.shared_vectors): the second scorer embeds only its queries."""
    from adaptrank.core.engine.biencoder import BiEncoderScorer, load_sentence_transformer
    from adaptrank.core.engine.residual import ResidualScorer

    zero_shot = BiEncoderScorer(tiny_zero_shot)
    residual = ResidualScorer(
        load_sentence_transformer(tiny_zero_shot),
        query_encoder=load_sentence_transformer(tiny_zero_shot),
        tau=TAU,
        prior_path=tiny_zero_shot,
    )
    first = zero_shot.score_pairs(PAIRS)
    encoded: list[str] = []
    original = residual._encode
    residual._encode = lambda model, texts: encoded.extend(texts) or original(model, texts)
    np.testing.assert_allclose(residual.score_pairs(PAIRS), first / TAU, rtol=1e-5, atol=1e-5)
    assert sorted(encoded) == sorted({q for q, _ in PAIRS})  # queries only: no passage embedded again
