"""LLM backends behind one batch-first protocol (:class:`LLM`); :func:`get_llm` picks one."""

from adaptrank.core.llm.base import LLM, LLMError, LLMStats, Message, Prompt
from adaptrank.core.llm.factory import BACKENDS, get_llm
from adaptrank.core.llm.scripted import ScriptedLLM

__all__ = ["BACKENDS", "LLM", "LLMError", "LLMStats", "Message", "Prompt", "ScriptedLLM", "get_llm"]
