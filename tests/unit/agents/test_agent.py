"""The decomposition agent with a scripted LLM: parsing, fallback, merge/dedup, provenance, trace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptrank.agents.agent import AgentConfig, DecompositionAgent
from adaptrank.agents.decompose import decompose, decompose_many, parse_subquestions, rule_split
from adaptrank.agents.prompts import ANSWER, DECOMPOSE, FOLLOW_UP
from adaptrank.agents.retrieval import rrf
from adaptrank.core.docstore import Hit
from adaptrank.core.engine import Reranker
from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLMError
from adaptrank.core.llm.scripted import ScriptedLLM
from adaptrank.core.prompts import get_template

Q = "What causes gout, and how is asthma treated?"


def scripted(answer: str | dict) -> ScriptedLLM:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return ScriptedLLM(lambda prompt: text)


class TableRetriever:
    """Fixed candidates per query text; records the calls."""

    def __init__(self, table: dict[str, list[str]], texts: dict[str, str]) -> None:
        self.table, self.texts, self.calls = table, texts, []

    def retrieve(self, queries, k):
        self.calls.append((list(queries), k))
        return [
            [Hit(i, self.texts[i], {"doc_id": i}, 1.0 - 0.01 * r) for r, i in enumerate(self.table.get(q, [])[:k])]
            for q in queries
        ]


TEXTS = {
    "gout-cause": "Gout is caused by uric acid crystals.",
    "gout-treat": "Gout is treated with colchicine.",
    "asthma-treat": "Asthma is treated with inhaled corticosteroids.",
    "asthma-cause": "Asthma is triggered by allergens.",
    "paris": "Paris is the capital of France.",
}


@pytest.fixture
def reranker(settings, tiny_bi_encoder):
    rr = Reranker(f"bi-encoder:{tiny_bi_encoder}", settings=settings)
    yield rr
    rr.close()


# -- decomposition ----------------------------------------------------------------------------
def test_llm_decomposition_uses_the_template_and_schema():
    llm = scripted({"sub_questions": ["What causes gout?", "How is asthma treated?"]})
    dec = decompose(Q, llm, max_subquestions=3)
    assert (dec.method, dec.sub_questions, dec.template) == (
        "llm",
        ["What causes gout?", "How is asthma treated?"],
        "decompose@2",
    )
    assert dec.queries == [Q, "What causes gout?", "How is asthma treated?"]  # the original is kept, first
    call = llm.calls[0]
    assert call["json_schema"]["properties"]["sub_questions"]["maxItems"] == 3
    assert call["temperature"] == 0.0 and call["strict"] is False  # a bad answer falls back alone
    prompt = call["prompts"][0]
    assert prompt[0]["role"] == "system" and "at most 3 items" in prompt[0]["content"]
    assert prompt[-1] == {"role": "user", "content": f"Message: {Q}"}
    assert len(prompt) == 2 + 2 * len(DECOMPOSE.examples)  # few-shot turns
    assert [get_template(t.name) for t in (DECOMPOSE, ANSWER, FOLLOW_UP)] == [
        DECOMPOSE,
        ANSWER,
        FOLLOW_UP,
    ]  # one registry


def test_llm_answer_with_chatter_and_code_fences_still_parses():
    raw = 'Sure! Here you go:\n```json\n{"sub_questions": ["What causes gout?", "what causes gout ?", "How is asthma treated?"]}\n```'
    assert decompose(Q, scripted(raw)).sub_questions == ["What causes gout?", "How is asthma treated?"]  # deduped


@pytest.mark.parametrize(
    "raw, why",
    [
        ("I cannot help with that.", "no JSON"),
        ('{"sub_questions": []}', "non-empty"),
        ('{"sub_questions": "What causes gout?"}', "non-empty"),
        ('{"sub_questions": [42]}', "not a non-empty string"),
        ('{"sub_questions": ["What is the capital of France?"]}', "not grounded"),
        ('{"sub_questions": ["' + "gout " * 100 + '?"]}', "bad length"),
        ('{"sub_questions": ["What causes gout?"]}', "cover 50%"),  # dropped the asthma half
        ('{"sub_questions": ["What causes gout and how is asthma treated?"]}', "1 sub-question(s) for 2 explicit"),
    ],
)
def test_invalid_llm_output_falls_back_to_rules(raw, why):
    dec = decompose(Q, scripted(raw))
    assert dec.method == "rule" and why in dec.error and dec.raw == raw
    assert dec.sub_questions == ["What causes gout?", "How is asthma treated?"]


def test_decompose_many_is_one_batched_call():
    answers = iter(['{"sub_questions": ["What causes gout?", "How is asthma treated?"]}', "garbage"])
    llm = ScriptedLLM(lambda p: next(answers))
    decs = decompose_many([Q, "What is gout? How is it treated?"], llm, max_subquestions=2)
    assert len(llm.calls) == 1 and len(llm.calls[0]["prompts"]) == 2
    assert [d.method for d in decs] == ["llm", "rule"]
    assert decs[1].sub_questions == ["What is gout?", "How is gout treated?"]  # the subject carried


def test_llm_failure_falls_back_to_rules():
    def boom(prompt):
        raise LLMError("endpoint down")

    dec = decompose(Q, ScriptedLLM(boom))
    assert dec.method == "rule" and "endpoint down" in dec.error


def test_rule_split():
    assert rule_split("What causes Gout ?, and what are the treatments for Asthma ?") == [
        "What causes Gout ?",
        "What are the treatments for Asthma ?",
    ]
    assert rule_split("Who directed Jaws; when was he born") == ["Who directed Jaws?", "When was he born?"]
    assert rule_split("What is X? How is Y treated? Is Z inherited?", max_subquestions=2) == [
        "What is X?",
        "How is Y treated? Is Z inherited?",
    ]
    # "and" between names, not clauses: one question
    assert rule_split("What are the symptoms of gout and asthma?") == ["What are the symptoms of gout and asthma?"]
    assert decompose("What is gout?", None).queries == ["What is gout?"]


def test_max_subquestions_caps_llm_output():
    llm = scripted({"sub_questions": ["What causes gout?", "How is gout treated?", "How is asthma treated?"]})
    assert (
        len(parse_subquestions(llm.respond([]), "What causes gout, how is gout treated and how is asthma treated?", 2))
        == 2
    )


# -- the loop ---------------------------------------------------------------------------------
def test_merge_dedup_provenance_and_rerank_against_the_original(reranker):
    table = {
        Q: ["gout-cause", "paris", "gout-treat"],
        "What causes gout?": ["gout-cause", "gout-treat"],
        "How is asthma treated?": ["asthma-treat", "asthma-cause", "gout-cause"],
    }
    retriever = TableRetriever(table, TEXTS)
    llm = scripted({"sub_questions": ["What causes gout?", "How is asthma treated?"]})
    agent = DecompositionAgent(reranker, llm, AgentConfig(top_n=10, k=3, rerank="original"))
    res = agent.run(Q, retriever, collection="c")

    assert retriever.calls == [([Q, "What causes gout?", "How is asthma treated?"], 3)]  # one batched call
    assert res.queries == [Q, "What causes gout?", "How is asthma treated?"] and res.decomposition == "llm"
    ids = [p.id for p in res.results]
    assert sorted(ids) == sorted(["gout-cause", "paris", "gout-treat", "asthma-treat", "asthma-cause"])  # deduped
    assert res.pool_size == 5

    by_id = {p.id: p for p in res.results}
    assert [(f.query_index, f.rank) for f in by_id["gout-cause"].found_by] == [(0, 1), (1, 1), (2, 3)]
    assert [(f.query_index, f.rank) for f in by_id["asthma-treat"].found_by] == [(2, 1)]
    assert by_id["asthma-treat"].found_by[0].query == "How is asthma treated?"

    # scores are the engine's, against the ORIGINAL question, sorted, ranks 1..n
    expected, _ = reranker.score_texts(Q, [TEXTS[i] for i in ids])
    assert np.allclose([p.score for p in res.results], expected)
    assert [p.score for p in res.results] == sorted((p.score for p in res.results), reverse=True)
    assert [p.rank for p in res.results] == list(range(1, 6))
    assert res.model.startswith("bi-encoder:")

    stages = [s.name for s in res.trace.stages]
    assert stages == ["decompose", "retrieve", "merge", "rerank"]
    assert all(s.seconds >= 0 for s in res.trace.stages) and res.trace.total_seconds >= res.trace.seconds("rerank")
    assert res.trace.stages[0].detail["method"] == "llm" and res.trace.stages[2].detail["pool"] == 5


def test_fusion_rerank_fuses_per_query_engine_rankings(reranker):
    table = {
        Q: ["gout-cause", "paris"],
        "What causes gout?": ["gout-cause", "gout-treat"],
        "How is asthma treated?": ["asthma-treat", "asthma-cause"],
    }
    agent = DecompositionAgent(reranker, None, AgentConfig(rerank="fusion"))
    res = agent.run(Q, TableRetriever(table, TEXTS))
    ids = list(dict.fromkeys(i for q in res.queries for i in table[q]))
    expected = dict.fromkeys(ids, 0.0)
    per_query = []
    for q in res.queries:
        sc, _ = reranker.score_texts(q, [TEXTS[i] for i in ids])
        per_query.append(dict(zip(ids, sc, strict=False)))
        for rank, i in enumerate(sorted(ids, key=lambda i: -per_query[-1][i]), 1):
            expected[i] += 1 / (60 + rank)
    for p in res.results:
        assert p.score == pytest.approx(expected[p.id])
        assert p.query_scores == pytest.approx([pq[p.id] for pq in per_query], abs=1e-5)
    assert [p.score for p in res.results] == sorted((p.score for p in res.results), reverse=True)
    assert res.trace.stages[3].detail["mode"] == "fusion" and res.trace.stages[3].detail["pairs"] == 3 * len(ids)
    with pytest.raises(InputError, match="^rerank"):
        agent.run(Q, TableRetriever(table, TEXTS), rerank="both")


def test_top_n_pool_budget_and_decompose_off(reranker):
    table = {Q: list(TEXTS), "What causes gout?": ["gout-cause"], "How is asthma treated?": ["asthma-treat"]}
    retriever = TableRetriever(table, TEXTS)
    agent = DecompositionAgent(reranker, None)
    res = agent.run(Q, retriever, top_n=2, pool_budget=6)
    assert retriever.calls[-1] == ([Q, "What causes gout?", "How is asthma treated?"], 2)  # 6 // 3 queries
    assert len(res.results) == 2 and res.decomposition == "rule"

    off = agent.run(Q, retriever, decompose=False, k=5)
    assert off.queries == [Q] and off.decomposition == "off" and retriever.calls[-1] == ([Q], 5)

    subs_only = agent.run(Q, retriever, retrieve_original=False, pool_budget=4)
    assert retriever.calls[-1] == (["What causes gout?", "How is asthma treated?"], 2)
    assert {p.id for p in subs_only.results} == {"gout-cause", "asthma-treat"}


def test_follow_up_round_for_thin_sub_questions(reranker):
    table = {
        Q: ["gout-cause"],
        "What causes gout?": ["gout-cause"],
        "How is asthma treated?": [],
        "Asthma inhaler therapy": ["asthma-treat"],
    }
    retriever = TableRetriever(table, TEXTS)

    def respond(prompt):
        if "sub_questions" in prompt[0]["content"]:
            return json.dumps({"sub_questions": ["What causes gout?", "How is asthma treated?"]})
        return json.dumps({"query": "Asthma inhaler therapy"})

    agent = DecompositionAgent(reranker, ScriptedLLM(respond), AgentConfig(follow_up=True, k=3))
    res = agent.run(Q, retriever)
    follow = res.trace.stages[-1]
    assert follow.name == "follow_up" and follow.detail["thin"] == ["How is asthma treated?"]
    assert res.queries[-1] == "Asthma inhaler therapy" and retriever.calls[-1] == (["Asthma inhaler therapy"], 6)
    found = {p.id: p.found_by for p in res.results}
    assert [(f.query_index, f.round) for f in found["asthma-treat"]] == [(3, 1)]


def test_answer_with_citations(reranker):
    retriever = TableRetriever({Q: ["gout-cause", "asthma-treat"]}, TEXTS)

    def respond(prompt):
        if "numbered passages" in prompt[0]["content"]:
            assert "[1]" in prompt[-1]["content"] and "[2]" in prompt[-1]["content"]
            return json.dumps({"answer": "Uric acid; inhaled steroids.", "citations": [2, 1, 9]})
        return "no json"

    agent = DecompositionAgent(reranker, ScriptedLLM(respond), AgentConfig(answer=True))
    res = agent.run(Q, retriever, decompose=False)
    assert res.answer.valid and res.answer.text == "Uric acid; inhaled steroids."
    assert res.answer.citations == [res.results[1].id, res.results[0].id]  # numbers -> ids; 9 dropped
    assert res.trace.stages[-1].name == "answer"

    garbage = DecompositionAgent(reranker, scripted("no json at all"), AgentConfig(answer=True)).run(Q, retriever)
    assert garbage.answer.valid is False and garbage.answer.text == "no json at all"


def test_bad_input_names_the_field(reranker):
    agent = DecompositionAgent(reranker)
    r = TableRetriever({}, TEXTS)
    with pytest.raises(InputError, match="^question"):
        agent.run("  ", r)
    with pytest.raises(InputError, match="^top_n"):
        agent.run(Q, r, top_n=0)
    with pytest.raises(InputError, match="^k"):
        agent.run(Q, r, k=10_000)
    with pytest.raises(TypeError, match="unknown agent options"):
        agent.run(Q, r, bogus=1)
    empty = agent.run(Q, r)
    assert empty.results == [] and empty.pool_size == 0


def test_rrf():
    a = [Hit("x", "", {}, 0.9), Hit("y", "", {}, 0.8)]
    b = [Hit("y", "", {}, 12.0), Hit("z", "", {}, 3.0)]
    fused = rrf([a, b], k=3)
    assert [h.id for h in fused] == ["y", "x", "z"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
