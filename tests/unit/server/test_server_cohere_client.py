"""The official Cohere SDK (v1 ``Client`` and v2 ``ClientV2``) works unchanged against ``/v1/rerank`` and
``/v2/rerank``: only its base URL and API key (our bearer token) change."""

from __future__ import annotations

import cohere
import numpy as np
import pytest

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.http import serve_in_thread

pytestmark = pytest.mark.timeout(300)

TOKEN = "cohere-compat-token"
DOCS = ["gout is caused by uric acid crystals", "paris is in france", "joint pain in the big toe"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_cross_encoder):
    home = tmp_path_factory.mktemp("cohere") / "home"
    services = Services(Settings(home=home, default_model=f"cross-encoder:{tiny_cross_encoder}", port=0, token=TOKEN))
    with serve_in_thread(create_app(services=services), services.settings, timeout=30) as url:
        yield url, services
    services.close()


def _expected(services, query):
    scores = services.reranker.scorer().score_pairs([(query, d) for d in DOCS])
    return list(np.argsort(-scores, kind="stable")), scores


def test_cohere_v1_client(server):
    url, services = server
    client = cohere.Client(api_key=TOKEN, base_url=url, max_retries=0, timeout=60)
    res = client.rerank(
        model="rerank-english-v3.0", query="what causes gout", documents=DOCS, top_n=2, return_documents=True
    )
    order, scores = _expected(services, "what causes gout")
    assert [r.index for r in res.results] == order[:2]
    for r in res.results:
        assert r.relevance_score == pytest.approx(float(scores[r.index]), abs=1e-5)
        assert r.document.text == DOCS[r.index]


def test_cohere_v2_client(server):
    url, services = server
    client = cohere.ClientV2(api_key=TOKEN, base_url=url, max_retries=0, timeout=60)
    res = client.rerank(model="rerank-v3.5", query="what causes gout", documents=DOCS)
    assert [r.index for r in res.results] == _expected(services, "what causes gout")[0]


def test_cohere_client_sees_our_errors(server):
    url, _ = server
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.Client(api_key="wrong", base_url=url, max_retries=0).rerank(query="q", documents=["a"])
    client = cohere.Client(api_key=TOKEN, base_url=url, max_retries=0)
    with pytest.raises(cohere.errors.BadRequestError) as exc:
        client.rerank(query="q", documents=["a"], top_n=0)
    assert exc.value.body == {"message": "top_n: is 0; it must be between 1 and 1000", "field": "top_n"}
    with pytest.raises(cohere.errors.NotFoundError):
        client.rerank(query="q", documents=["a"], model="no-such-model")
    assert len(client.rerank(query="q", documents=["a", "b"]).results) == 2
