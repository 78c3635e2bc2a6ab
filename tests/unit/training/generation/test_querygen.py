"""Query generation: prompts from named templates, batching, cleaning and deduplication."""

from __future__ import annotations

import json

import pytest

from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.core.llm import ScriptedLLM
from adaptrank.core.prompts import JUDGE_RELEVANCE, QUERYGEN_TYPED, get_template, pick_question_types, register
from adaptrank.training.corpus import CorpusPassage
from adaptrank.training.querygen import clean_query, generate_queries, plan_queries, strip_chatter

PASSAGE = "Marfan syndrome is caused by a mutation in the FBN1 gene. Symptoms include long fingers and a curved spine."


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("What causes Marfan syndrome?", "What causes Marfan syndrome?"),
        ('A patient might ask, "What are the signs of Marfan syndrome?"', "What are the signs of Marfan syndrome?"),
        ("Sure! Here is a question: How is gout treated?", "How is gout treated?"),
        ("1. What is lupus? 2. What causes it?", "What is lupus?"),
        ("Question: Is asthma inherited?\nAnswer: no", "Is asthma inherited?"),
        ("Here is a question:\n**What causes gout?**", "What causes gout?"),
        ("  \n", ""),
    ],
)
def test_strip_chatter(raw, expected):
    assert strip_chatter(raw) == expected


def test_clean_query_reasons():
    assert clean_query("What causes Marfan syndrome?", PASSAGE) == ("What causes Marfan syndrome?", None)
    assert clean_query("", PASSAGE) == (None, "empty")
    assert clean_query("Marfan?", PASSAGE) == (None, "too_short")
    assert clean_query("why " * 50, PASSAGE) == (None, "too_long")
    assert clean_query("What does the passage say about genes?", PASSAGE)[1] == "refers_to_passage"
    copied = "Marfan syndrome is caused by a mutation in the FBN1 gene?"
    assert clean_query(copied, PASSAGE) == (None, "copies_passage")


def test_question_types_follow_the_passage_and_vary():
    # cue words: "caused" (cause), "mutation"/"gene" (genetic changes), "syndrome" (information)...
    assert pick_question_types(PASSAGE, 3, "medical") == ["cause", "genetic changes", "information"]
    plain = "Lorem ipsum dolor sit amet."
    assert pick_question_types(plain, 3, "general", offset=0) != pick_question_types(plain, 3, "general", offset=1)
    assert len(set(pick_question_types(plain, 4, "general"))) == 4
    with pytest.raises(InputError, match="question_types"):
        pick_question_types(plain, 1, "legal")


def test_plan_spreads_queries_over_passages():
    ps = [CorpusPassage(id=f"d#{i}", doc_id="d", text=PASSAGE) for i in range(3)]
    plan = plan_queries(ps, 4, "medical")
    assert [p.id for p, _ in plan] == ["d#0", "d#0", "d#1", "d#2"]
    assert plan[0][1] != plan[1][1]  # two different types for the same passage


def test_generate_queries_is_one_batched_call_and_cleans(gen):
    llm = gen.scripted()
    docs = [
        [CorpusPassage(id=f"{i}#0", doc_id=str(i), text=gen.ASPECTS["causes"].format(c=c))]
        for i, c in enumerate(gen.CONDITIONS[:5])
    ]
    queries, counts = generate_queries(llm, docs, 2, type_set="medical")
    assert len(llm.calls) == 1 and len(llm.calls[0]["prompts"]) == 10  # 5 documents x 2, one call
    assert llm.calls[0]["stop"] == ["\n"] and llm.calls[0]["max_new_tokens"] == QUERYGEN_TYPED.max_new_tokens
    # The scripted model writes the same question for both types: one is a duplicate.
    assert [q.query for q in queries] == [f"What causes {c}?" for c in gen.CONDITIONS[:5]]
    assert counts == {"prompts": 10, "kept": 5, "duplicate": 5}
    assert all(q.template == "querygen.typed@1" and q.query_type for q in queries)
    # A second batch sees the first batch's queries as duplicates across the run.
    seen = {"what causes alder fever"}
    again, c2 = generate_queries(llm, docs[:1], 1, seen=seen)
    assert again == [] and c2["duplicate"] == 1


def test_list_template_parses_json_and_counts_invalid():
    replies = iter(
        [
            json.dumps(
                {
                    "queries": [
                        {"type": "cause", "query": "What causes gout?"},
                        {"type": "treatment", "query": "How is gout treated?"},
                    ]
                }
            ),
            "I cannot do that.",
        ]
    )
    llm = ScriptedLLM(lambda p: next(replies))
    docs = [
        [CorpusPassage(id="a#0", doc_id="a", text="Gout comes from uric acid.")],
        [CorpusPassage(id="b#0", doc_id="b", text="x")],
    ]
    queries, counts = generate_queries(llm, docs, 2, template="querygen.list")
    assert [q.query for q in queries] == ["What causes gout?", "How is gout treated?"]
    assert queries[0].query_type == "cause" and counts["invalid_output"] == 1
    assert llm.calls[0]["json_schema"]["required"] == ["queries"] and llm.calls[0]["strict"] is False


def test_templates_are_named_versioned_and_immutable():
    assert get_template("judge.relevance") is JUDGE_RELEVANCE
    assert get_template("judge.relevance@1") is JUDGE_RELEVANCE
    assert JUDGE_RELEVANCE.generate_kwargs()["choices"] == ["yes", "no"]
    with pytest.raises(InputError, match="bump its version"):
        register(QUERYGEN_TYPED)
    with pytest.raises(NotFoundError, match="known"):
        get_template("nope")
    with pytest.raises(InputError, match="needs"):
        QUERYGEN_TYPED.render(passage="x")
    with pytest.raises(InputError, match="not a query template"):
        generate_queries(ScriptedLLM(lambda p: ""), [[CorpusPassage("a", "a", "t")]], 1, template="judge.relevance")


def test_grounding_drops_copied_entities_and_contentless_questions():
    from adaptrank.training.querygen import Grounding

    corpus = [f"Condition {i} is a rare disorder with symptoms in the body." for i in range(60)] + [
        "Acatalasemia is caused by mutations in the CAT gene.",
        "Marfan syndrome affects the connective tissue.",
        "L1 syndrome is an inherited disorder.",
    ]
    g = Grounding(corpus)
    passage = corpus[60]
    assert g("What genetic changes cause acatalasemia?", passage)
    assert not g("What genetic changes are related to Marfan syndrome?", passage)  # a few-shot entity
    assert not g("What are the symptoms of the condition?", passage)  # nothing specific at all
    assert not g("How long is the Great Barrier Reef?", passage)  # words the corpus never uses
    assert g("What is L1 syndrome?", corpus[62])  # short tokens with digits count
    assert clean_query("What are the symptoms of the condition?", passage, grounding=g) == (None, "not_grounded")
