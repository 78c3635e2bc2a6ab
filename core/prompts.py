"""Named, versioned prompt templates, each with the output constraint it must satisfy.

Prompts live here, not inside pipeline logic, so a wording change is one reviewed diff and the
``name@version`` recorded in a dataset card says exactly which wording produced the data.
Bump ``version`` whenever a template's text changes.

A template renders to a chat prompt (``[{"role", "content"}, ...]``), the input of
:meth:`adaptrank.core.llm.base.LLM.generate`; its ``json_schema`` / ``choices`` / ``stop`` /
``max_new_tokens`` are the arguments to pass along (:meth:`PromptTemplate.generate_kwargs`).
Few-shot examples are chat turns (user, assistant), which small instruct models follow far better
than examples pasted into one message.

Templates:

* ``querygen.typed`` — ONE search question of a given *type* about a passage, plain text (one
  line). Robust on tiny models (the embedded SmolLM2-135M): no JSON to break, and the type comes
  from the pipeline, which varies the questions.
* ``querygen.list`` — k questions of varied types in one JSON reply (for capable LLMs behind
  ``openai``/``vllm``; fewer calls per document).
* ``judge.relevance`` — does this passage answer this query? ``yes``/``no`` (a constrained choice).
* ``judge.likelihood`` — the query-likelihood judge for small models: log p(query | passage).

Question types are general-purpose (``definition``, ``cause``, ``how-to``...); the ``medical``
set adds the consumer-health ones (``symptoms``, ``treatment``, ``inheritance``...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from adaptrank.core.errors import InputError, NotFoundError

Prompt = list[dict[str, str]]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    description: str
    system: str
    user: str  # str.format template
    examples: tuple[tuple[str, str], ...] = ()  # few-shot (user, assistant) chat turns
    json_schema: dict[str, Any] | None = None
    choices: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None
    max_new_tokens: int = 256
    variables: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: Any) -> Prompt:
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise InputError("prompt", f"template {self.id} needs {missing}")
        messages: Prompt = [{"role": "system", "content": self.system.format(**values)}]
        for user, assistant in self.examples:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": self.user.format(**values)})
        return messages

    def generate_kwargs(self) -> dict[str, Any]:
        """The constraint arguments for ``LLM.generate`` that go with this template."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.json_schema is not None:
            kwargs["json_schema"] = self.json_schema
        if self.choices:
            kwargs["choices"] = list(self.choices)
        if self.stop:
            kwargs["stop"] = list(self.stop)
        return kwargs


# -- question types -----------------------------------------------------------------------------
@dataclass(frozen=True)
class QuestionType:
    name: str
    ask: str  # the instruction fragment: "Write a question that asks {ask}."
    cues: tuple[str, ...] = ()  # words in a passage that suggest it answers this type


QUESTION_TYPES: dict[str, QuestionType] = {
    t.name: t
    for t in [
        QuestionType(
            "definition", "what the main subject of the passage is", ("is a", "is an", "refers to", "means", "defined")
        ),
        QuestionType(
            "cause",
            "what causes or leads to something the passage describes",
            ("cause", "caused", "due to", "because", "result of", "leads to", "trigger"),
        ),
        QuestionType(
            "how-to",
            "how to do something the passage explains",
            ("how to", "step", "you can", "use ", "install", "configure", "run "),
        ),
        QuestionType(
            "features",
            "what the characteristics or features of something are",
            ("feature", "characteri", "include", "consists", "property"),
        ),
        QuestionType("fact", "for a specific fact stated in the passage", ()),
        QuestionType(
            "comparison",
            "how two things the passage mentions differ",
            ("differ", "unlike", "whereas", "compared", "versus", " vs"),
        ),
        QuestionType(
            "symptoms",
            "what the signs or symptoms of the condition are",
            ("symptom", "signs", "features of", "characterized", "experience"),
        ),
        QuestionType(
            "treatment",
            "how the condition is treated or managed",
            ("treat", "therapy", "management", "medication", "surgery"),
        ),
        QuestionType(
            "inheritance",
            "whether or how the condition is inherited",
            ("inherit", "autosomal", "x-linked", "recessive", "dominant", "parent"),
        ),
        QuestionType(
            "genetic changes",
            "which genetic changes are related to the condition",
            ("mutation", "gene", "variant", "chromosome"),
        ),
        QuestionType(
            "frequency",
            "how common the condition is",
            ("affects", "prevalence", "per ", "common", "rare", "frequency", "incidence"),
        ),
        QuestionType(
            "diagnosis", "how the condition is diagnosed or tested for", ("diagnos", "test", "screening", "exam")
        ),
        QuestionType(
            "outlook", "what the outlook or prognosis is", ("prognosis", "outlook", "life expectancy", "survival")
        ),
        QuestionType(
            "information", "what the condition is", ("is a", "is an", "disorder", "disease", "condition", "syndrome")
        ),
    ]
}

TYPE_SETS: dict[str, tuple[str, ...]] = {
    "general": ("definition", "cause", "how-to", "features", "fact", "comparison"),
    "medical": (
        "information",
        "symptoms",
        "cause",
        "treatment",
        "inheritance",
        "genetic changes",
        "frequency",
        "diagnosis",
        "outlook",
    ),
}


def pick_question_types(passage: str, k: int, type_set: str = "general", offset: int = 0) -> list[str]:
    """``k`` question types that suit ``passage``: types whose cue words occur in it first (most
    cues first), then the set's defaults in order. ``offset`` rotates the defaults so a corpus gets
    variety even where no cue matches. Types repeat only when ``k`` exceeds the set."""
    if type_set not in TYPE_SETS:
        raise InputError("question_types", f"{type_set!r} is not one of {sorted(TYPE_SETS)}")
    names = TYPE_SETS[type_set]
    low = passage.lower()
    scored = sorted(
        ((sum(low.count(c) for c in QUESTION_TYPES[n].cues), i, n) for i, n in enumerate(names)),
        key=lambda x: (-x[0], x[1]),
    )
    cued = [n for s, _, n in scored if s > 0]
    rest = [n for n in names[offset % len(names) :] + names[: offset % len(names)] if n not in cued]
    order = cued + rest
    return [order[i % len(order)] for i in range(k)]


def _clip(text: str, limit: int) -> str:
    """Cut at a word boundary (prompts stay within the small model's context)."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


# -- templates ----------------------------------------------------------------------------------
QUERYGEN_TYPED = PromptTemplate(
    name="querygen.typed",
    version="1",
    description="One search question of a given type that the passage answers (plain text, one line).",
    system=(
        "You write the search question a user would type to find a passage. Write ONE short, natural "
        "question that the passage answers. Name the subject instead of saying 'the passage'. "
        "Reply with the question only."
    ),
    user="Passage: {passage}\n\nWrite a question that asks {ask}.",
    examples=(
        (
            "Passage: Marfan syndrome is a disorder that affects the connective tissue. Signs include "
            "long arms and fingers, a curved spine and problems with the heart valves and aorta.\n\n"
            "Write a question that asks what the signs or symptoms of the condition are.",
            "What are the signs of Marfan syndrome?",
        ),
        (
            "Passage: To rotate logs with logrotate, add a file under /etc/logrotate.d that names the "
            "log path and options such as daily, rotate 7 and compress.\n\n"
            "Write a question that asks how to do something the passage explains.",
            "How do I set up log rotation with logrotate?",
        ),
        (
            "Passage: The Great Barrier Reef is the world's largest coral reef system, stretching over "
            "2,300 kilometres off the coast of Queensland, Australia.\n\n"
            "Write a question that asks for a specific fact stated in the passage.",
            "How long is the Great Barrier Reef?",
        ),
    ),
    stop=("\n",),
    max_new_tokens=48,
    variables=("passage", "ask"),
)

QUERYGEN_FOCUSED = PromptTemplate(
    name="querygen.focused",
    version="1",
    description=(
        "The one search question a passage answers best: about what this passage says, not about its "
        "document's topic in general (no question type is imposed, so no taxonomy is needed)."
    ),
    system=(
        "You write the search question a user would type to find one passage. Ask about the main point "
        "of THIS passage — what it specifically says — so that other passages about the same subject "
        "would not answer it. Name the subject instead of saying 'the passage'. Reply with the question only."
    ),
    user="Passage: {passage}",
    examples=(
        (
            "Passage: Marfan syndrome. The condition is inherited in an autosomal dominant pattern: one "
            "altered copy of the FBN1 gene in each cell is enough to cause it.",
            "How is Marfan syndrome inherited?",
        ),
        (
            "Passage: logrotate. To rotate logs, add a file under /etc/logrotate.d that names the log "
            "path and options such as daily, rotate 7 and compress.",
            "How do I set up log rotation with logrotate?",
        ),
        (
            "Passage: Great Barrier Reef. The reef stretches over 2,300 kilometres off the coast of "
            "Queensland, Australia, and can be seen from space.",
            "How long is the Great Barrier Reef?",
        ),
    ),
    stop=("\n",),
    max_new_tokens=48,
    variables=("passage",),
)

QUERYLIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "queries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "query": {"type": "string", "minLength": 3, "maxLength": 300},
                },
                "required": ["type", "query"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 20,
        }
    },
    "required": ["queries"],
    "additionalProperties": False,
}

QUERYGEN_LIST = PromptTemplate(
    name="querygen.list",
    version="1",
    description="k search questions of varied types about a passage in one JSON reply.",
    system=(
        "You write search questions that users would type to find a passage. Each question must be "
        "answered by the passage, name its subject (never 'the passage'), and ask something different: "
        "vary the type ({types}). "
        'Answer with JSON only: {{"queries": [{{"type": "...", "query": "..."}}]}} with exactly {k} items.'
    ),
    user="Passage: {passage}",
    examples=(
        (
            "Passage: Marfan syndrome is a disorder that affects the connective tissue. It is inherited "
            "in an autosomal dominant pattern. Signs include long arms and fingers and heart valve problems.",
            '{"queries": [{"type": "symptoms", "query": "What are the signs of Marfan syndrome?"}, '
            '{"type": "inheritance", "query": "Is Marfan syndrome inherited?"}]}',
        ),
    ),
    json_schema=QUERYLIST_SCHEMA,
    max_new_tokens=320,
    variables=("passage", "k", "types"),
)

JUDGE_RELEVANCE = PromptTemplate(
    name="judge.relevance",
    version="1",
    description="Does the passage answer the query? yes/no (the first choice's probability is the judge's score).",
    system=(
        "You judge search results. Answer yes if the passage answers the query (it gives the "
        "information asked for), no if it does not — a passage about a different subject, or about "
        "the same subject but a different question, is no. Answer with one word: yes or no."
    ),
    user="Query: {query}\nPassage: {passage}\nDoes the passage answer the query?",
    examples=(
        (
            "Query: What causes gout?\nPassage: Gout is caused by a build-up of uric acid, which forms "
            "crystals in the joints.\nDoes the passage answer the query?",
            "yes",
        ),
        (
            "Query: How is gout treated?\nPassage: Gout is caused by a build-up of uric acid, which "
            "forms crystals in the joints.\nDoes the passage answer the query?",
            "no",
        ),
    ),
    choices=("yes", "no"),
    max_new_tokens=4,
    variables=("query", "passage"),
)

JUDGE_LIKELIHOOD = PromptTemplate(
    name="judge.likelihood",
    version="1",
    description=(
        "Query likelihood: the judge's score is log p(query | passage) as the reply to this prompt "
        "(LLM.loglikelihood), compared with the query's own passage. For small models."
    ),
    system="You write the search question a user would type to find a passage.",
    user="Passage: {passage}\n\nWrite a question that this passage answers.",
    max_new_tokens=48,
    variables=("passage",),
)

TEMPLATES: dict[str, PromptTemplate] = {}


def register(template: PromptTemplate) -> PromptTemplate:
    """Add a template (other parts register theirs here); ``name@version`` must be new."""
    if template.id in TEMPLATES:
        raise InputError("template", f"{template.id} is already registered; bump its version")
    TEMPLATES[template.id] = template
    latest = TEMPLATES.get(template.name)
    if latest is None or _version_key(template.version) >= _version_key(latest.version):
        TEMPLATES[template.name] = template
    return template


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-]", version))


def get_template(name: str) -> PromptTemplate:
    """``"querygen.typed"`` (the newest version) or ``"querygen.typed@1"``."""
    try:
        return TEMPLATES[name]
    except KeyError:
        known = sorted(k for k in TEMPLATES if "@" not in k)
        raise NotFoundError("template", f"unknown prompt template {name!r} (known: {known})") from None


for _t in (QUERYGEN_TYPED, QUERYGEN_FOCUSED, QUERYGEN_LIST, JUDGE_RELEVANCE, JUDGE_LIKELIHOOD):
    register(_t)


def querygen_typed_prompt(passage: str, qtype: str, max_chars: int = 1000) -> Prompt:
    return QUERYGEN_TYPED.render(passage=_clip(passage, max_chars), ask=QUESTION_TYPES[qtype].ask)


def querygen_focused_prompt(passage: str, max_chars: int = 1000, template: PromptTemplate = QUERYGEN_FOCUSED) -> Prompt:
    """``template``: the focused template or a copy with other few-shot turns (a query log's)."""
    return template.render(passage=_clip(passage, max_chars))


def querygen_list_prompt(passage: str, k: int, types: list[str], max_chars: int = 2500) -> Prompt:
    return QUERYGEN_LIST.render(passage=_clip(passage, max_chars), k=k, types=", ".join(types))


def judge_prompt(query: str, passage: str, max_chars: int = 800) -> Prompt:
    return JUDGE_RELEVANCE.render(query=query, passage=_clip(passage, max_chars))


def likelihood_prompt(passage: str, max_chars: int = 800) -> Prompt:
    return JUDGE_LIKELIHOOD.render(passage=_clip(passage, max_chars))
