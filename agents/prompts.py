"""The agent's prompt templates: named, versioned, each with the JSON schema its answer must match.

Kept here, not inside the agent's logic, so a prompt change is one reviewed diff and the version
recorded in a trace says which wording produced a result. They are
:class:`adaptrank.core.prompts.PromptTemplate` objects registered in the one template registry
(:func:`adaptrank.core.prompts.get_template`), next to the generation part's templates.

A template renders to a chat prompt (a list of ``{"role", "content"}`` messages), the input of
:meth:`adaptrank.core.llm.base.LLM.generate`, which receives ``template.json_schema`` as ``json_schema``.
"""

from __future__ import annotations

from typing import Any

from adaptrank.core.llm.base import Prompt
from adaptrank.core.prompts import PromptTemplate, register


def decompose_schema(max_subquestions: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "sub_questions": {
                "type": "array",
                "items": {"type": "string", "minLength": 3, "maxLength": 300},
                "minItems": 1,
                "maxItems": max_subquestions,
            }
        },
        "required": ["sub_questions"],
        "additionalProperties": False,
    }


DECOMPOSE = PromptTemplate(
    name="decompose",
    version="2",
    description="The message as one clean search question, or one question per independent ask (JSON).",
    system=(
        "You turn a message into search questions. A message that asks one thing becomes ONE clean question: "
        "drop greetings, thanks and stories, keep names, drugs, doses and conditions. A message that asks "
        "several independent things becomes one question per thing. Every question must make sense alone: "
        "write the name instead of 'it', 'its', 'they' or 'this condition'. "
        'Answer with JSON only: {{"sub_questions": ["...", "..."]}} with at most {max_subquestions} items.'
    ),
    user="Message: {question}",
    json_schema=decompose_schema(4),
    examples=(
        (
            "Message: What causes gout, and how is asthma treated?",
            '{"sub_questions": ["What causes gout?", "How is asthma treated?"]}',
        ),
        (
            "Message: What causes inflation, and how is it measured?",
            '{"sub_questions": ["What causes inflation?", "How is inflation measured?"]}',
        ),
        (
            "Message: Hi! My laptop is three years old. How do I reset a Dell XPS 13? Thanks",
            '{"sub_questions": ["How do I reset a Dell XPS 13?"]}',
        ),
    ),
    max_new_tokens=160,
    variables=("question", "max_subquestions"),
)

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "minLength": 1},
        "citations": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    },
    "required": ["answer", "citations"],
    "additionalProperties": False,
}

ANSWER = PromptTemplate(
    name="answer",
    version="1",
    description="An answer from the numbered passages only, with the numbers it cites (JSON).",
    system=(
        "Answer the question using only the numbered passages. Cite the passages you used by number. "
        "If they do not contain the answer, say so. "
        'Answer with JSON only: {{"answer": "...", "citations": [1, 2]}}.'
    ),
    user="Passages:\n{passages}\n\nQuestion: {question}",
    json_schema=ANSWER_SCHEMA,
    max_new_tokens=256,
    variables=("passages", "question"),
)

FOLLOW_UP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 3, "maxLength": 300}},
    "required": ["query"],
    "additionalProperties": False,
}

FOLLOW_UP = PromptTemplate(
    name="follow_up",
    version="1",
    description="A different search query for a sub-question whose search found nothing convincing (JSON).",
    system=(
        "A search for a sub-question found nothing convincing. Rewrite it as a different search query "
        "for the same information: other words, the key names kept. "
        'Answer with JSON only: {{"query": "..."}}.'
    ),
    user="Original question: {question}\nSub-question: {sub_question}",
    json_schema=FOLLOW_UP_SCHEMA,
    max_new_tokens=64,
    variables=("question", "sub_question"),
)

for _t in (DECOMPOSE, ANSWER, FOLLOW_UP):
    register(_t)


def render_decompose(question: str, max_subquestions: int) -> tuple[Prompt, dict[str, Any]]:
    """The decomposition prompt and its schema for at most ``max_subquestions`` items."""
    return DECOMPOSE.render(question=question, max_subquestions=max_subquestions), decompose_schema(max_subquestions)
