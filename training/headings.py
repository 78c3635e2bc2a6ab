"""Questions a corpus asks itself: a passage that opens with a question ("What causes Alkaptonuria?
Mutations in the HGD gene ...") is a FAQ entry, and its opening question is a real question written
by the document's author, answered by exactly that passage.

Why: the embedded LLM's questions drift from their passage to its subject and take the generator's
style, while a team's users ask the kinds of questions its documents are organised around. Where a
corpus has such headings, they are free training queries in the authors' own words (no LLM call),
and they keep the adapted model anchored to the question kinds the corpus itself names. A corpus
without them (plain prose) gets none, and generation is unchanged.
"""

from __future__ import annotations

import re

#: the ``template`` of a corpus question's group (there is no prompt: the document wrote it)
CORPUS_QUESTION = "corpus.heading"

#: a first sentence that is a question: opens with a question word, ends in "?", an answer follows
_OPENING = re.compile(r"^\s*([^.?!:;\n]{8,240}\?)\s+\S")
_QUESTION_WORDS = frozenset(
    "what how why when where who whom whose which is are was were do does did can could should would will "
    "may might has have".split()
)


def opening_question(text: str, title: str = "", max_words: int = 30) -> str | None:
    """The passage's opening question, when it has one and something follows it; else None.
    ``title``: a title the corpus loader put in front of the text ("Title. text") is skipped."""
    head = title.strip()
    if head and text.startswith(head):
        text = text[len(head) :].lstrip(" .:-")
    m = _OPENING.match(text)
    if m is None:
        return None
    question = " ".join(m.group(1).split())
    words = question.split()
    if not 3 <= len(words) <= max_words or words[0].lower() not in _QUESTION_WORDS:
        return None
    return question
