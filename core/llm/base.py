"""The LLM protocol: batch-first. A list of chat prompts in, a list of texts out.

Every backend (transformers, llama.cpp, OpenAI-compatible, vLLM, MCP sampling, the scripted test
LLM) implements :meth:`LLM.generate`. Constraints are part of the call so backends that can
enforce them natively (vLLM structured outputs, grammar sampling) do, and the rest validate and
retry:

* ``json_schema`` — the text must be a JSON document matching the schema;
* ``choices`` — the text must be exactly one of these strings (a judge's label).

Backends may take extra keyword options (``**options``); the ones every adaptrank backend
understands:

* ``stop`` — a list of strings that end a completion (not included in the text);
* ``strict`` — True (default): an output that still breaks ``json_schema``/``choices`` after the
  backend's retries raises :class:`LLMError`; False: the best raw text is returned instead, so a
  batch pipeline can skip that one item and count it rather than lose the whole batch;
* ``seed`` — for sampling at ``temperature > 0``.

Every backend counts its work in :attr:`LLM.stats` (calls, prompts, tokens, retries, invalid
outputs), which the dataset card and the benchmark report.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from adaptrank.core.errors import AdaptRankError
from adaptrank.core.llm.constraints import canonical_json, match_choice, parse_json

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
Prompt = list[Message]


class LLMError(AdaptRankError, RuntimeError):
    """The backend failed (down, timed out, or kept returning garbage) after its retries.

    An :class:`AdaptRankError`, so MCP tools and the CLI show its message to the caller."""


@dataclass
class LLMStats:
    """Work counters, summed over the backend's lifetime (``reset()`` to start a measurement)."""

    calls: int = 0
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    retries: int = 0
    invalid: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        for name, value in asdict(LLMStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def check_output(text: str, json_schema: dict[str, Any] | None, choices: list[str] | None) -> tuple[str | None, str]:
    """``(the text to return, "")`` when ``text`` meets the constraint (JSON repaired and made
    canonical, a choice mapped onto its exact spelling), else ``(None, the problem)``: the schema
    violation, or ``not one of [...]``."""
    if json_schema is not None:
        value, error = parse_json(text, json_schema)
        return (canonical_json(value), "") if error is None else (None, error)
    if choices:
        label = match_choice(text, choices)
        return (label, "") if label is not None else (None, f"not one of {choices}")
    return text, ""


class ReplyAttempts:
    """The per-reply form of :meth:`LLM.enforce`, for backends that send one request per prompt
    (``openai``, ``sampling``) and loop themselves, sync or async::

        attempts = ReplyAttempts(self, retries, json_schema, choices, quote=120)
        for attempt in attempts:
            text = <ask>                      # or attempts.failed("why") and continue
            ok = attempts.accept(text)
            if ok is not None:
                return ok
        return attempts.give_up(strict, "<backend>: ...")

    Every failed attempt but the last counts in ``stats.retries``; giving up counts in
    ``stats.invalid`` and raises with ``strict``.
    """

    def __init__(
        self, llm: LLM, retries: int, json_schema: dict[str, Any] | None, choices: list[str] | None, quote: int = 120
    ) -> None:
        self.llm, self.retries, self.json_schema, self.choices, self.quote = llm, retries, json_schema, choices, quote
        self.attempt = 0
        self.text = ""
        self.problem = "no reply"

    def __iter__(self):
        for attempt in range(self.retries + 1):
            self.attempt = attempt
            yield attempt

    def failed(self, problem: str) -> None:
        """An attempt that got no reply (a transport error the backend retries)."""
        self.problem = problem
        if self.attempt < self.retries:
            self.llm.stats.retries += 1

    def accept(self, text: str) -> str | None:
        """The text to return when ``text`` meets the constraint; None (and the problem noted)
        when the reply must be asked again."""
        self.text = text
        ok, problem = check_output(text, self.json_schema, self.choices)
        if ok is not None:
            return ok
        quoted = f": {text[: self.quote]!r}" if self.quote else ""
        self.failed(f"invalid JSON ({problem}){quoted}" if self.json_schema is not None else f"{problem}{quoted}")
        return None

    def give_up(self, strict: bool, message: str) -> str:
        """After the last attempt: the raw text (``strict=False``) or :class:`LLMError` (``message``)."""
        self.llm.stats.invalid += 1
        if strict:
            raise LLMError(message)
        return self.text


class LLM(ABC):
    #: e.g. "transformers:SmolLM2-135M-Instruct" — recorded in dataset cards
    name: str = "llm"
    #: True when this model judges relevance better by query likelihood (``loglikelihood``) than
    #: by answering yes/no — small models; the labelling step's ``judge_method="auto"`` reads it.
    likelihood_judge: bool = False

    @property
    def stats(self) -> LLMStats:
        """Lazily created so subclasses need not call ``super().__init__()``."""
        stats = self.__dict__.get("_stats")
        if stats is None:
            stats = self.__dict__["_stats"] = LLMStats()
        return stats

    @abstractmethod
    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
        **options: Any,
    ) -> list[str]:
        """One completion per prompt, in order (options: ``stop``, ``strict``, ``seed``)."""

    async def agenerate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        """Async form; the default runs :meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, prompts, **kwargs)

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        """Pick one of ``choices`` per prompt, with the probability of the *first* choice where the
        backend exposes token probabilities (None otherwise)."""
        return [(text, None) for text in self.generate(prompts, max_new_tokens=8, choices=choices)]

    def enforce(
        self,
        texts: list[str],
        *,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
        strict: bool = True,
        retries: int = 0,
        regenerate: Callable[[list[int], int], list[str]] | None = None,
        failure: Callable[[int, str], str],
    ) -> list[str]:
        """The output check every backend runs after a batch (a template method: the backend
        supplies how to ask again and what to say).

        Outputs that meet the constraint are returned repaired (:func:`check_output`); the rest are
        asked again with ``regenerate(indices, attempt)`` up to ``retries`` times (each counted in
        ``stats.retries``). What still fails counts in ``stats.invalid`` and is returned raw, or,
        with ``strict``, raises :class:`LLMError` with ``failure(number failing, first problem)``.
        """
        if json_schema is None and not choices:
            return texts
        pending: dict[int, str] = {}
        for i, text in enumerate(texts):
            ok, problem = check_output(text, json_schema, choices)
            if ok is None:
                pending[i] = problem
            else:
                texts[i] = ok
        for attempt in range(retries if regenerate is not None else 0):
            if not pending:
                break
            idx = sorted(pending)
            self.stats.retries += len(idx)
            for i, text in zip(idx, regenerate(idx, attempt), strict=True):
                ok, problem = check_output(text, json_schema, choices)
                if ok is None:
                    texts[i], pending[i] = text, problem
                else:
                    texts[i] = ok
                    del pending[i]
        if pending:
            self.stats.invalid += len(pending)
            if strict:
                raise LLMError(failure(len(pending), next(iter(pending.values()))))
        return texts

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release weights or connections."""
