"""Question understanding before retrieval: cleaning chatter, sub-questions that stand alone,
splitting only what asks several things (issue 13)."""

from __future__ import annotations

import json

import pytest

from adaptrank.agents.clean import clean_message
from adaptrank.agents.decompose import by_rules, carry_subject, decompose, rule_split, stands_alone, subject_of
from adaptrank.core.llm.scripted import ScriptedLLM


@pytest.mark.parametrize(
    ("message", "cleaned"),
    [
        # a real consumer message: subject line run in, "Just curious", narration, thanks
        (
            "how much glucagon How much glucose is in my GlucaGen HypoKit ? Just curious, I know that there is "
            "enough because I have used it. Thank you very much",
            "How much glucose is in my GlucaGen HypoKit ?",
        ),
        ("Hi, my son was just diagnosed. What causes gout? Thanks so much!", "What causes gout?"),
        # a dose and a drug name in a context sentence are kept; the sign-off and its name are not
        (
            "Hello doctor, I take 20 mg of Lipitor every day. Can I drink grapefruit juice? Regards, John",
            "I take 20 mg of Lipitor every day. Can I drink grapefruit juice?",
        ),
        # a question that only points at its subject keeps the sentence that names it
        (
            "Dear Sir/Madam, my daughter has Fabry disease. What are its symptoms? Any help would be greatly "
            "appreciated.",
            "My daughter has Fabry disease. What are its symptoms?",
        ),
        ("Order #A12345: How do I get a refund? Sent from my iPhone", "How do I get a refund?"),
        (
            "Good morning. I have a question. Is Alport syndrome inherited? Thank you in advance for your help.",
            "Is Alport syndrome inherited?",
        ),
        # an age is narration, a duration with its unit is not
        (
            "Hello doctor, I am 50 years old and worried. What are the genetic changes related to alkaptonuria ?",
            "What are the genetic changes related to alkaptonuria ?",
        ),
        ("I had a fever for 3 days. Is it the flu?", "I had a fever for 3 days. Is it the flu?"),
        # nothing to clean: unchanged
        ("What are the symptoms of Fabry disease?", "What are the symptoms of Fabry disease?"),
        (
            "I have had a headache for 3 days and ibuprofen does not help.",
            "I have had a headache for 3 days and ibuprofen does not help.",
        ),
        # nothing but chatter: the message is kept rather than emptied
        ("Thanks!", "Thanks!"),
    ],
)
def test_clean_message(message, cleaned):
    got = clean_message(message)
    assert got.text == cleaned
    assert got.changed == (cleaned != message)


def test_cleaning_records_what_it_removed():
    got = clean_message("Hi there! What causes gout? Cheers, Ann")
    assert got.text == "What causes gout?"
    assert "Hi there!" in got.removed and any("Cheers" in r for r in got.removed)


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("What are the treatments for Gout ?", "Gout"),
        ("How is gout treated?", "gout"),
        ("Is Alport syndrome inherited ?", "Alport syndrome"),
        ("What is (are) Fabry disease ?", "Fabry disease"),
        ("How many people are affected by Alport syndrome ?", "Alport syndrome"),
        ("What are the genetic changes related to Alport syndrome ?", "Alport syndrome"),
        ("How is it treated?", None),
    ],
)
def test_subject_of(question, subject):
    assert subject_of(question) == subject


@pytest.mark.parametrize(
    ("question", "subs"),
    [
        ("What causes gout, and how is it treated?", ["What causes gout?", "How is gout treated?"]),
        (
            "What are the symptoms of Fabry disease, and what are its treatments?",
            ["What are the symptoms of Fabry disease?", "What are the treatments of Fabry disease?"],
        ),
        (
            "Is Alport syndrome inherited? What are its symptoms?",
            ["Is Alport syndrome inherited?", "What are the symptoms of Alport syndrome?"],
        ),
        ("What causes gout and what are the treatments?", ["What causes gout?", "What are the treatments for gout?"]),
        ("What is gout and how many people get this condition?", ["What is gout?", "How many people get gout?"]),
        # two subjects: nothing to carry
        ("What causes gout, and how is asthma treated?", ["What causes gout?", "How is asthma treated?"]),
    ],
)
def test_rule_sub_questions_stand_alone(question, subs):
    got = carry_subject(rule_split(question), question)
    assert got == subs and all(stands_alone(s) for s in got)


def test_a_context_sentence_is_never_a_sub_question():
    assert rule_split("Is Alport syndrome inherited? My brother has it.") == [
        "Is Alport syndrome inherited? My brother has it."
    ]


def test_single_intent_is_searched_as_one_cleaned_query():
    dec = by_rules("Hi! My mom has gout. What causes gout? Thanks in advance")
    assert dec.method == "single" and dec.queries == ["What causes gout?"]
    assert "Hi!" in dec.removed
    two = by_rules("What causes gout, and how is it treated?")
    assert two.method == "rule" and two.queries == [
        "What causes gout, and how is it treated?",
        "What causes gout?",
        "How is gout treated?",
    ]


def test_llm_sub_question_that_names_nothing_is_repaired_or_rejected():
    q = "What causes gout, and how is it treated?"
    # the pronoun is repaired with the question's subject
    ok = decompose(q, ScriptedLLM(lambda p: json.dumps({"sub_questions": ["What causes gout?", "How is it treated?"]})))
    assert ok.method == "llm" and ok.sub_questions == ["What causes gout?", "How is gout treated?"]
    # a part that names nothing and has no subject before it to borrow: rejected, the rules decide
    q2 = "How is it treated, and what does Lipitor cost?"
    bad = decompose(
        q2, ScriptedLLM(lambda p: json.dumps({"sub_questions": ["How is it treated?", "What does Lipitor cost?"]}))
    )
    assert bad.method == "rule" and "does not stand alone" in bad.error


def test_llm_single_intent_rewrite_may_only_remove_words():
    msg = "Hello, quick question. I take Lipitor for my cholesterol. Can I drink grapefruit juice? Thanks!"
    llm = ScriptedLLM(lambda p: json.dumps({"sub_questions": ["Can I drink grapefruit juice with Lipitor?"]}))
    dec = decompose(msg, llm)
    assert dec.method == "single" and dec.queries == ["Can I drink grapefruit juice with Lipitor?"]
    assert dec.question == "I take Lipitor for my cholesterol. Can I drink grapefruit juice?"
    # the LLM saw the cleaned message
    assert llm.calls[0]["prompts"][0][-1]["content"] == f"Message: {dec.question}"
    # a rewrite that brings words of its own (a small model copying its examples) is not used
    copy = decompose(
        "What are the treatments for Wilson disease?",
        ScriptedLLM(lambda p: json.dumps({"sub_questions": ["Is Wilson disease curable?"]})),
    )
    assert copy.method == "single" and copy.queries == ["What are the treatments for Wilson disease?"]
    assert "adds words" in copy.error


def test_llm_split_the_rules_do_not_see_must_reuse_the_message_words():
    q = "What are the symptoms of gout and asthma?"
    ok = decompose(
        q,
        ScriptedLLM(
            lambda p: json.dumps(
                {"sub_questions": ["What are the symptoms of gout?", "What are the symptoms of asthma?"]}
            )
        ),
    )
    assert ok.method == "llm" and ok.queries[1:] == [
        "What are the symptoms of gout?",
        "What are the symptoms of asthma?",
    ]
    invented = decompose(
        "What causes gout?",
        ScriptedLLM(lambda p: json.dumps({"sub_questions": ["What causes gout?", "How is gout treated?"]})),
    )
    assert invented.method == "single" and invented.queries == ["What causes gout?"]
    # a paraphrase of the same ask is one ask
    para = decompose(
        "What are the treatments for Wilson disease?",
        ScriptedLLM(
            lambda p: json.dumps(
                {"sub_questions": ["What are the treatments for Wilson disease?", "How do I treat Wilson disease?"]}
            )
        ),
    )
    assert para.method == "single"
