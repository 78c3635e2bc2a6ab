"""LLM backends behind one batch-first protocol (:class:`LLM`)."""

from adaptrank.core.llm.base import LLM, LLMError, Message, Prompt
from adaptrank.core.llm.scripted import ScriptedLLM

__all__ = ["LLM", "LLMError", "Message", "Prompt", "ScriptedLLM"]
