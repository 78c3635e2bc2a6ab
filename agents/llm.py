"""Which LLM the agent decomposes (and answers) with: the settings' backend, through the LLM
part's factory (``adaptrank.core.llm.get_llm``), so ``ADAPTRANK_LLM_BACKEND`` /
``ADAPTRANK_LLM_MODEL`` mean the same thing everywhere (the embedded SmolLM2-135M by default).
The factory caches one instance per backend and model: don't ``close()`` what this returns.
"""

from __future__ import annotations

from adaptrank.core.llm import get_llm
from adaptrank.core.llm.base import LLM
from adaptrank.core.settings import Settings


def load_llm(settings: Settings) -> LLM:
    return get_llm(settings)
