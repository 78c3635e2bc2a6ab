import math

import pytest

from adaptrank.core.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

RANKED = ["a", "b", "c"]
GRADED = {"a": 0, "b": 2, "c": 1}


def test_ndcg_gains_exponential_by_default_and_linear_like_trec_eval():
    d = [1 / math.log2(i + 2) for i in range(3)]
    exp = (3 * d[1] + 1 * d[2]) / (3 * d[0] + 1 * d[1])
    lin = (2 * d[1] + 1 * d[2]) / (2 * d[0] + 1 * d[1])
    assert ndcg_at_k(RANKED, GRADED) == pytest.approx(exp)
    assert ndcg_at_k(RANKED, GRADED, gain="linear") == pytest.approx(lin)
    binary = {"b": 1, "c": 1}
    assert ndcg_at_k(RANKED, binary) == pytest.approx(ndcg_at_k(RANKED, binary, gain="linear"))
    assert evaluate_run({"q": RANKED}, {"q": GRADED}, gain="linear")["ndcg@10"] == pytest.approx(lin)
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, GRADED, gain="log")


def test_mrr_and_recall_count_any_positive_grade():
    assert mrr_at_k(RANKED, GRADED) == 0.5
    assert recall_at_k(RANKED, GRADED, 2) == 0.5
