"""Which LLM the agent decomposes (and answers) with, from the settings.

The LLM part of adaptrank owns the backends (``adaptrank.core.llm``); when it offers a factory
this defers to it, so ``ADAPTRANK_LLM_BACKEND`` / ``ADAPTRANK_LLM_MODEL`` mean the same thing
everywhere. Until then the embedded transformers backend (SmolLM2-135M by default) is built here.
"""

from __future__ import annotations

import importlib

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLM
from adaptrank.core.settings import Settings

_FACTORIES = ("load_llm", "create_llm", "get_llm", "build_llm")


def load_llm(settings: Settings) -> LLM:
    core_llm = importlib.import_module("adaptrank.core.llm")
    for name in _FACTORIES:
        factory = getattr(core_llm, name, None)
        if callable(factory):
            return factory(settings)
    if settings.llm_backend == "transformers":
        from adaptrank.core.llm.hf import TransformersLLM

        return TransformersLLM(settings.llm_model, device=settings.device)
    raise InputError("llm_backend", f"{settings.llm_backend!r} has no loader here yet; use 'transformers'")
