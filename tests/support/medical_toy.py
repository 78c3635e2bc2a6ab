"""Toy medical corpus and scripted LLM for the generation tests (the ``gen`` fixture returns this module).

The corpus: one passage per (condition, aspect) — causes, symptoms, treatment — so a query about
the causes of X has hard negatives on the same condition (the other aspects) and on other
conditions. The scripted LLM writes the question the type asks for, and judges "yes" exactly when
the passage is about the query's condition AND aspect: the ground truth the tests check against.
"""

from __future__ import annotations

import re
from pathlib import Path

from adaptrank.core.llm import ScriptedLLM

CONDITIONS = [
    "Alder fever",
    "Birch syndrome",
    "Cedar disease",
    "Dogwood palsy",
    "Elm anemia",
    "Fir dystrophy",
    "Ginkgo ataxia",
    "Hazel neuropathy",
    "Ivy myopathy",
    "Juniper dermatitis",
    "Larch arthritis",
    "Maple retinopathy",
]
ASPECTS = {
    "causes": "{c} is caused by a change in one gene and by infections in early childhood.",
    "symptoms": "The symptoms of {c} include fever, skin rash, tiredness and pain in the joints.",
    "treatment": "Treatment of {c} involves rest, medication for the pain and physical therapy.",
}
QUESTION = {
    "causes": "What causes {c}?",
    "symptoms": "What are the symptoms of {c}?",
    "treatment": "How is {c} treated?",
}


def write_corpus(folder: Path, n_conditions: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(CONDITIONS[:n_conditions]):
        for aspect, text in ASPECTS.items():
            (folder / f"{i:02d}-{aspect}.txt").write_text(text.format(c=c))
    return folder


def _condition(text: str) -> str | None:
    for c in CONDITIONS:
        if c in text:
            return c
    return None


def _aspect_of_passage(text: str) -> str | None:
    low = text.lower()
    for aspect, marker in (("causes", "caused by"), ("symptoms", "symptoms of"), ("treatment", "treatment of")):
        if marker in low:
            return aspect
    return None


def _aspect_of_query(query: str) -> str | None:
    low = query.lower()
    if low.startswith("what causes"):
        return "causes"
    if "symptoms" in low:
        return "symptoms"
    if "treated" in low:
        return "treatment"
    return None


def truly_relevant(query: str, passage: str) -> bool:
    return _condition(query) == _condition(passage) and _aspect_of_query(query) == _aspect_of_passage(passage)


def respond(prompt) -> str:
    """Query generation and judging, deterministically, from the rendered prompt."""
    user = prompt[-1]["content"]
    if user.startswith("Query:"):
        query = re.search(r"Query: (.*)\n", user).group(1)
        passage = user.split("Passage: ", 1)[1]
        return "yes" if truly_relevant(query, passage) else "no"
    passage = re.search(r"Passage: (.*?)(?:\n\nWrite.*)?$", user, re.S).group(1)  # typed or focused template
    c = _condition(passage) or "it"
    aspect = _aspect_of_passage(passage) or "causes"
    # Wrap like a small model does, to exercise cleaning.
    return f'Sure! Here is a question: "{QUESTION[aspect].format(c=c)}"'


def judge_score(prompt) -> float:
    return 0.9 if respond(prompt) == "yes" else 0.2


def scripted() -> ScriptedLLM:
    return ScriptedLLM(respond, score=judge_score)
