"""A scripted LLM for tests: real protocol, answers from a function you give it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adaptrank.core.llm.base import LLM, Prompt


class ScriptedLLM(LLM):
    """``ScriptedLLM(lambda prompt: "...")`` answers each prompt with the function's result.

    ``calls`` records every batch, so tests can check batching and prompts. ``score`` (optional)
    gives :meth:`judge` a probability for the first choice, like backends that expose token
    probabilities; without it the judge's score is None.
    """

    def __init__(
        self,
        respond: Callable[[Prompt], str],
        name: str = "scripted",
        score: Callable[[Prompt], float] | None = None,
    ) -> None:
        self.respond = respond
        self.name = name
        self.score = score
        self.calls: list[dict[str, Any]] = []

    def generate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        self.calls.append({"prompts": prompts, **kwargs})
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        return [self.respond(p) for p in prompts]

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        labels = self.generate(prompts, max_new_tokens=8, choices=choices)
        if self.score is None:
            return [(label, None) for label in labels]
        return [(label, float(self.score(p))) for label, p in zip(labels, prompts, strict=True)]
