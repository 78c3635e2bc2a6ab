"""Clean a message before retrieval: keep what it asks, drop the chatter around it.

People write to a search box the way they write to a person: "Hi, my son was just diagnosed.
What causes gout? Thanks so much!". The greeting, the thanks, a sign-off, an order number or the
subject line repeated at the top carry no information, yet the embedding of the whole message is
pulled toward them, so retrieval and reranking both get worse. :func:`clean_message` removes them
by rules and keeps everything else: drug names, doses, conditions, the question itself.

Context sentences (not questions) are kept when they add something the question lacks: a name or a
number (a drug, a dose, a condition written with a capital), or when the question itself only
points at its subject ("what are its symptoms?"). A context sentence that only narrates ("I have
used it before and I am worried") is dropped when a question is present. A message with no question
keeps all its non-chatter sentences. The original text stays with the caller for the trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")

# Whole sentences (or leading/trailing phrases) that carry no information.
_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|greetings|dear|good\s+(?:morning|afternoon|evening|day))\b"
    r"(?:\s+(?:there|all|everyone|doctor|doc|dr\.?|sir\s*/\s*madam|sir\s+or\s+madam|sir|madam|team|nurse|folks|guys))*"
    r"(?:\s+[A-Z][a-z]+)?\s*[,.!:;-]*\s*)+",
    re.IGNORECASE,
)
_CHATTER_PHRASES = [
    r"thanks?(?:\s+you)?(?:\s+(?:so|very)\s+much|\s+a\s+lot|\s+in\s+advance|\s+for\s+(?:your|the|any)\s+(?:help|time|answer|reply|assistance)[^.!?]*)*",
    r"thank\s+you(?:\s+(?:so|very)\s+much)?(?:\s+(?:for|in)\s+[^.!?]*)?",
    r"(?:many|much)\s+thanks",
    r"cheers",
    r"(?:best|kind|warm)?\s*regards",
    r"sincerely(?:\s+yours)?",
    r"yours\s+(?:truly|sincerely|faithfully)",
    r"best\s+wishes",
    r"take\s+care",
    r"god\s+bless(?:\s+you)?",
    r"(?:any|your)\s+(?:help|advice|information|info|answers?|reply)\s+(?:is|would\s+be|will\s+be)\s+(?:greatly\s+|much\s+|very\s+much\s+)?appreciated",
    r"i\s+(?:would|'d)\s+(?:really\s+|greatly\s+)?appreciate\s+(?:any|your)\s+[^.!?]*",
    r"i\s+appreciate\s+(?:it|your\s+help|your\s+time)",
    r"(?:please|pls|plz)\s+(?:help(?:\s+me)?|advise|reply|respond|let\s+me\s+know)",
    r"(?:can|could)\s+(?:you|someone|anyone)\s+(?:please\s+)?help(?:\s+me)?",
    r"i\s+(?:have|had)\s+a\s+(?:quick\s+|simple\s+)?question",
    r"(?:quick|simple)\s+question",
    r"just\s+(?:curious|wondering|asking)",
    r"i\s+was\s+(?:just\s+)?wondering",
    r"sent\s+from\s+my\s+\w+(?:\s+\w+)?",
    r"looking\s+forward\s+to\s+(?:your|a|hearing)[^.!?]*",
    r"hope\s+(?:you\s+can\s+help|to\s+hear\s+from\s+you|this\s+(?:makes\s+sense|finds\s+you\s+well))[^.!?]*",
    r"ok(?:ay)?",
    r"hi",
    r"hello",
    r"hey",
]
_CHATTER = re.compile(r"^(?:\s*(?:" + "|".join(_CHATTER_PHRASES) + r")\s*[,.!:;-]*)+\s*", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"(?:^|[\s,.!])(?:(?:best|kind|warm)\s+regards|regards|sincerely|yours\s+(?:truly|sincerely|faithfully)|"
    r"cheers|best\s+wishes|sent\s+from\s+my)\b[\s,.!:-]*(?:[A-Z][a-z]+\s*){0,3}\.?\s*$",
    re.IGNORECASE,
)
_NOISE = re.compile(
    r"\b(?:order|ref(?:erence)?|case|ticket|account|invoice|member|patient)\s*(?:no\.?|number|num|#|id)?\s*[:#]?\s*"
    r"[A-Z0-9-]*\d[A-Z0-9-]{3,}\b"  # order numbers and the like (at least 5 characters with a digit)
    r"|\S+@\S+\.\w+"  # e-mail addresses
    r"|https?://\S+|www\.\S+"  # links
    r"|\(?\+?\d[\d\s().-]{7,}\d",  # phone numbers
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:what|how|why|when|where|which|who|whom|whose|is|are|was|were|can|could|does|do|did|should|"
    r"will|would|has|have|may|might|am|shall)\b",
    re.IGNORECASE,
)
_DEICTIC = re.compile(r"\b(?:it|its|they|them|their|this|that|these|those|he|she|his|her)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
# The agents' two stopword sets live here, side by side, because they answer different questions.
# STOP: words that never name what a message is about (cleaning, subjects, standing alone).
STOP = frozenset(
    (
        "i me my mine we our you your he she his her it its they them their this that these those a an the "
        "and or but if so of to in on at for with by from about as is are was were be been being have has had "
        "do does did can could will would should may might must just also very really not no yes because "
        "since when while what how why where which who there here than then too some any all more most much "
        "many am"
    ).split()
)
# CONTENT_STOP: words not counted when a sub-question's content words are compared with the question's
# (grounding and coverage in decompose); narrower than STOP, so "not", "all", "most" still count there.
CONTENT_STOP = frozenset(
    (
        "the a an of and or to in on for with by at from is are was were be been being it its this that these "
        "those what how why when where which who whom whose do does did can could should would will has have "
        "had about as into than then there their they them i you he she we me my your our"
    ).split()
)

# Words that say *what* is asked about a subject but never name the subject ("what are its
# symptoms?"): a question made only of these and pronouns needs its subject from elsewhere.
GENERIC = frozenset(
    w[:5]
    for w in (
        "symptoms signs causes cause caused causing treat treated treating treatment treatments therapy "
        "therapies cure cured outlook prognosis diagnosis diagnosed diagnose test tests testing inherited "
        "inheritance genetic genes changes frequency common prevent prevented prevention risk risks factors "
        "side effects dose dosage types type stages information info know need get happen happens mean means "
        "work works take help condition disease disorder syndrome problem thing things people person affected "
        "affect affects options available long last lasts serious dangerous normal fix manage managed "
        "management doctor doctors expect else anything something kind kinds way ways best good bad worse "
        "better one ones related associated linked involved"
    ).split()
)


@dataclass
class Cleaned:
    """The cleaned text and what was taken out (for the trace)."""

    text: str
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.removed)


def is_question(sentence: str) -> bool:
    s = sentence.strip()
    return s.endswith("?") or bool(_QUESTION_START.match(s))


def _content(text: str) -> set[str]:
    return {w.lower()[:5] for w in _WORD.findall(text) if w.lower() not in STOP and len(w) > 1}


_UNIT = re.compile(
    r"^(?:mg|mcg|µg|ug|g|kg|ml|l|iu|units?|%|percent|tablets?|pills?|capsules?|doses?|times|x|mmol|"
    r"mmhg|bpm|degrees?|°[cf]?|puffs?|drops?|weeks?|days?|months?)$",
    re.IGNORECASE,
)


def _informative(words: list[str]) -> list[str]:
    """Words that name things: capitalized inside the sentence (a drug, a condition), a name with a
    digit in it ("B12", "TK2"), or a number with a unit (a dose, a duration), not an age."""
    out = []
    for n, w in enumerate(words):
        if w.isdigit():
            if n + 1 < len(words) and _UNIT.match(words[n + 1]):
                out.append(f"{w} {words[n + 1]}")
        elif any(c.isdigit() for c in w) or (n > 0 and w[:1].isupper() and w.lower() not in STOP):
            out.append(w)
    return out


def _strip_chatter(sentence: str, removed: list[str]) -> str:
    """Leading greeting/chatter phrases, a trailing sign-off, and noise tokens off one sentence."""
    out = sentence
    for pattern in (_GREETING, _CHATTER):
        m = pattern.match(out)
        while m and m.group(0).strip():
            removed.append(m.group(0).strip())
            out = out[m.end() :]
            m = pattern.match(out)
    m = _SIGN_OFF.search(out)
    if m:
        removed.append(m.group(0).strip())
        out = out[: m.start()]
    for m in list(_NOISE.finditer(out)):
        removed.append(m.group(0).strip())
    out = _NOISE.sub(" ", out)
    return " ".join(out.split()).strip(" ,;:-")


def _split_subject_line(text: str, removed: list[str]) -> str:
    """``"how much glucagon How much glucose is in ..."``: a short subject line run into the
    message with no punctuation, whose words the message repeats, is dropped."""
    m = re.match(r"^([^.!?\n]{3,80}?)\s+(?=[A-Z])", text)
    if not m:
        return text
    head, rest = m.group(1), text[m.end() :]
    words = _WORD.findall(head)
    if not 1 <= len(words) <= 10 or any(w[:1].isupper() for w in words[1:]):
        return text
    if not head[:1].islower() and not _QUESTION_START.match(rest):
        return text  # "Gout What causes it" stays: the head may be the only place the subject is named
    if _content(head) and _content(head) <= _content(rest):
        removed.append(head.strip())
        return rest
    return text


def clean_message(text: str) -> Cleaned:
    """The message without greetings, thanks, sign-offs, repeated subject lines, order numbers,
    links and narration that adds nothing to its question; see the module docstring."""
    removed: list[str] = []
    body = " ".join(text.split())
    body = _split_subject_line(body, removed)
    sentences = [s for s in _SENTENCE.split(body) if s and s.strip()]
    kept: list[str] = []
    for s in sentences:
        c = _strip_chatter(s, removed)
        if not c or not _content(c):
            if c:
                removed.append(c)
            continue
        kept.append(c[0].upper() + c[1:])
    questions = [s for s in kept if is_question(s)]
    if questions and len(questions) < len(kept):
        asked = set().union(*(_content(q) for q in questions))
        points = any(_DEICTIC.search(q) and not (_content(q) - GENERIC) for q in questions)
        final = []
        for s in kept:
            if s in questions or points:
                final.append(s)
                continue
            new = [
                w for w in _informative(re.findall(r"[A-Za-z0-9%°µ][A-Za-z0-9'%-]*", s)) if w.lower()[:5] not in asked
            ]
            if new:
                final.append(s)
            else:
                removed.append(s)
        kept = final
    cleaned = " ".join(kept).strip()
    if not cleaned:  # nothing but chatter: keep the message as it was
        return Cleaned(" ".join(text.split()), [])
    return Cleaned(cleaned, [r for r in removed if r])
