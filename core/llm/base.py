"""The LLM protocol: batch-first. A list of chat prompts in, a list of texts out.

Every backend (transformers, llama.cpp, OpenAI-compatible, vLLM, MCP sampling, the scripted test
LLM) implements :meth:`LLM.generate`. Constraints are part of the call so backends that can
enforce them natively (vLLM structured outputs, grammar sampling) do, and the rest validate and
retry:

* ``json_schema`` — the text must be a JSON document matching the schema;
* ``choices`` — the text must be exactly one of these strings (a judge's label).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
Prompt = list[Message]


class LLMError(RuntimeError):
    """The backend failed (down, timed out, or kept returning garbage) after its retries."""


class LLM(ABC):
    #: e.g. "transformers:SmolLM2-135M-Instruct" — recorded in dataset cards
    name: str = "llm"

    @abstractmethod
    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
    ) -> list[str]:
        """One completion per prompt, in order."""

    async def agenerate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        """Async form; the default runs :meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, prompts, **kwargs)

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        """Pick one of ``choices`` per prompt, with the probability of the *first* choice where the
        backend exposes token probabilities (None otherwise)."""
        return [(text, None) for text in self.generate(prompts, max_new_tokens=8, choices=choices)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release weights or connections."""
