"""Any OpenAI-compatible chat endpoint: ``vllm serve``, Ollama, llama.cpp server, hosted APIs.

* **Concurrency**: a batch is sent as up to ``concurrency`` requests in flight (the server batches
  them: vLLM's continuous batching turns this into GPU batches).
* **Retries**: connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
  jitter; a reply that breaks ``json_schema``/``choices`` is asked again (counted in
  ``stats.retries``). After ``max_retries`` it is an :class:`LLMError` (or, with ``strict=False``,
  the raw text for the caller to skip). 401/404 and other client errors fail at once.
* **Structured output** (``structured``):

  - ``"json_schema"``: OpenAI's ``response_format={"type": "json_schema", ...}`` (OpenAI, current
    vLLM, Ollama, llama.cpp server); choices become a JSON-schema enum ``{"answer": ...}``;
  - ``"vllm"``: vLLM's ``structured_outputs`` in ``extra_body`` (``{"json": schema}`` /
    ``{"choice": [...]}``) — the field current vLLM honours. Never ``guided_json``: vLLM
    ≥ 0.12 removed it and accepts-and-ignores unknown fields, so output would silently be free text;
  - ``"none"``: prompt-only, validated here;
  - ``"auto"`` (default): ``json_schema``, falling back to ``none`` once if the server rejects it.

  Whatever the mode, every reply is validated here too.
* **Judge probability**: ``logprobs``/``top_logprobs`` where the server returns them.
"""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from adaptrank.core.errors import MissingExtraError
from adaptrank.core.llm.base import LLM, LLMError, Prompt, ReplyAttempts
from adaptrank.core.llm.constraints import choice_schema

Structured = Literal["auto", "json_schema", "vllm", "none"]


class OpenAICompatibleLLM(LLM):
    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str = "http://127.0.0.1:8001/v1",
        api_key: str = "EMPTY",
        concurrency: int = 8,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        timeout: float = 120.0,
        structured: Structured = "auto",
    ) -> None:
        try:
            import openai
        except ImportError:
            raise MissingExtraError("openai", "openai") from None
        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout)
        self.base_url = base_url
        self.model = model
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.structured: Structured = structured
        self._logprobs_ok = True
        self._lock = threading.Lock()
        self.name = f"openai:{model or '?'}@{base_url}"

    # -- helpers -------------------------------------------------------------------------------
    def _model(self) -> str:
        """The configured model, or the server's first (``vllm serve`` serves exactly one)."""
        if self.model is None:
            with self._lock:
                if self.model is None:
                    try:
                        models = self.client.models.list()
                        self.model = models.data[0].id
                    except Exception as exc:  # noqa: BLE001 - reported with the URL below
                        raise LLMError(
                            f"openai: no llm_model given and {self.base_url}/models failed ({exc}); "
                            "set ADAPTRANK_LLM_MODEL"
                        ) from None
                    self.name = f"openai:{self.model}@{self.base_url}"
        return self.model

    def _constraint_kwargs(self, json_schema, choices) -> dict[str, Any]:
        mode = self.structured
        if mode in ("auto", "json_schema"):
            schema = json_schema if json_schema is not None else (choice_schema(choices) if choices else None)
            if schema is None:
                return {}
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": True},
                }
            }
        if mode == "vllm":
            if json_schema is not None:
                return {"extra_body": {"structured_outputs": {"json": json_schema}}}
            if choices:
                return {"extra_body": {"structured_outputs": {"choice": list(choices)}}}
        return {}

    def _sleep(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * (2**attempt))
        time.sleep(delay * (0.5 + random.random() / 2))

    def _one(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None,
        choices: list[str] | None,
        stop: list[str] | None,
        strict: bool,
        seed: int | None,
        want_logprobs: bool = False,
    ) -> tuple[str, float | None]:
        openai = self._openai
        attempts = ReplyAttempts(self, self.max_retries, json_schema, choices, quote=120)
        for attempt in attempts:
            kwargs: dict[str, Any] = {
                "model": self._model(),
                "messages": prompt,
                "max_tokens": max_new_tokens,
                "temperature": temperature if attempt == 0 or temperature > 0 else 0.3,
                **self._constraint_kwargs(json_schema, choices),
            }
            if stop:
                kwargs["stop"] = stop
            if seed is not None:
                kwargs["seed"] = seed + attempt
            if want_logprobs and self._logprobs_ok:
                kwargs.update(logprobs=True, top_logprobs=10)
            try:
                resp = self.client.chat.completions.create(**kwargs)
            except (
                openai.APIConnectionError,
                openai.APITimeoutError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                attempts.failed(f"{type(exc).__name__}: {exc}")
                if attempt < self.max_retries:
                    self._sleep(attempt)
                continue
            except openai.BadRequestError as exc:
                # (another thread may already have switched the mode: "none" counts as auto here)
                if self.structured in ("auto", "none") and ("response_format" in kwargs or "logprobs" in kwargs):
                    # The server does not take structured output or logprobs: do without, once.
                    if "response_format" in kwargs:
                        self.structured = "none"
                    else:
                        self._logprobs_ok = False
                    return self._one(
                        prompt,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        json_schema=json_schema,
                        choices=choices,
                        stop=stop,
                        strict=strict,
                        seed=seed,
                        want_logprobs=want_logprobs,
                    )
                raise LLMError(f"{self.name}: the server rejected the request: {exc}") from None
            except openai.APIStatusError as exc:
                raise LLMError(f"{self.name}: HTTP {exc.status_code}: {exc.message}") from None
            self.stats.calls += 1
            usage = getattr(resp, "usage", None)
            if usage is not None:
                self.stats.prompt_tokens += usage.prompt_tokens or 0
                self.stats.generated_tokens += usage.completion_tokens or 0
            choice = resp.choices[0] if resp.choices else None
            text = (choice.message.content or "") if choice is not None and choice.message else ""
            ok = attempts.accept(text)
            if ok is not None:
                prob = (
                    _choice_probability(choice, choices) if want_logprobs and choices and json_schema is None else None
                )
                return ok, prob
        failure = f"{self.name}: failed after {self.max_retries + 1} attempts: {attempts.problem}"
        if not attempts.text:  # never a reply to fall back on, whatever strict says
            raise LLMError(failure)
        return attempts.give_up(strict, failure), None

    def _map(self, prompts: list[Prompt], **kwargs: Any) -> list[tuple[str, float | None]]:
        t0 = time.perf_counter()
        self.stats.prompts += len(prompts)
        if len(prompts) == 1 or self.concurrency == 1:
            out = [self._one(p, **kwargs) for p in prompts]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
                out = list(pool.map(lambda p: self._one(p, **kwargs), prompts))
        self.stats.seconds += time.perf_counter() - t0
        return out

    # -- protocol ------------------------------------------------------------------------------
    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
        stop: list[str] | None = None,
        strict: bool = True,
        seed: int | None = 0,
        **_: Any,
    ) -> list[str]:
        results = self._map(
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            json_schema=json_schema,
            choices=choices,
            stop=stop,
            strict=strict,
            seed=seed,
        )
        return [text for text, _ in results]

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        return self._map(
            prompts,
            max_new_tokens=16 if self.structured in ("auto", "json_schema") else 4,
            temperature=0.0,
            json_schema=None,
            choices=choices,
            stop=None,
            strict=True,
            seed=0,
            want_logprobs=True,
        )

    def close(self) -> None:
        self.client.close()


def _choice_probability(choice: Any, choices: list[str]) -> float | None:
    """P(choices[0]) from the top log-probabilities at the token where the answer starts."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    norm = [c.lower() for c in choices]
    for token in content:
        piece = token.token.strip().strip('"').lower()
        if not piece or not any(c.startswith(piece) for c in norm):
            continue
        mass = [0.0] * len(choices)
        for alt in token.top_logprobs or [token]:
            alt_piece = alt.token.strip().strip('"').lower()
            if not alt_piece:
                continue
            for k, c in enumerate(norm):
                if c.startswith(alt_piece):
                    mass[k] += math.exp(alt.logprob)
                    break
        total = sum(mass)
        return mass[0] / total if total > 0 else None
    return None
