"""A scripted LLM for tests: real protocol, answers from a function you give it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adaptrank.core.llm.base import LLM, Prompt


class ScriptedLLM(LLM):
    """``ScriptedLLM(lambda prompt: "...")`` answers each prompt with the function's result.

    ``calls`` records every batch, so tests can check batching and prompts.
    """

    def __init__(self, respond: Callable[[Prompt], str], name: str = "scripted") -> None:
        self.respond = respond
        self.name = name
        self.calls: list[dict[str, Any]] = []

    def generate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        self.calls.append({"prompts": prompts, **kwargs})
        return [self.respond(p) for p in prompts]
