"""In-process vLLM (``vllm.LLM``) for batch generation on a GPU host (the ``vllm`` extra).

vLLM's wheels are CUDA builds that pin their own torch and transformers, so it is never installed
on CPU hosts; importing this module is safe anywhere and the import error names the extra.

Constraints map onto vLLM's structured outputs (``StructuredOutputsParams(json=...)`` /
``(choice=...)`` on ``SamplingParams.structured_outputs``; vLLM < 0.11 spelled it
``GuidedDecodingParams`` on ``guided_decoding`` and both are supported), so on a GPU host the same
pipeline needs no other change: ``ADAPTRANK_LLM_BACKEND=vllm ADAPTRANK_LLM_MODEL=Qwen/...``.
The judge asks for ``logprobs`` on its one constrained token to report a probability.
"""

from __future__ import annotations

import math
import time
from typing import Any

from adaptrank.core.errors import MissingExtraError
from adaptrank.core.llm.base import LLM, LLMError, Prompt
from adaptrank.core.llm.constraints import match_choice

DEFAULT_VLLM_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise MissingExtraError("vllm", "vllm") from None
    return vllm


def sampling_params(
    vllm: Any,
    *,
    max_new_tokens: int,
    temperature: float,
    json_schema: dict[str, Any] | None = None,
    choices: list[str] | None = None,
    stop: list[str] | None = None,
    seed: int | None = None,
    logprobs: int | None = None,
) -> Any:
    """``vllm.SamplingParams`` for one call, with structured outputs for the constraints."""
    kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature}
    if stop:
        kwargs["stop"] = list(stop)
    if seed is not None and temperature > 0:
        kwargs["seed"] = seed
    if logprobs:
        kwargs["logprobs"] = logprobs
    constraint: dict[str, Any] = {}
    if json_schema is not None:
        constraint = {"json": json_schema}
    elif choices:
        constraint = {"choice": list(choices)}
    if constraint:
        sp_module = getattr(vllm, "sampling_params", None)
        if sp_module is not None and hasattr(sp_module, "StructuredOutputsParams"):
            kwargs["structured_outputs"] = sp_module.StructuredOutputsParams(**constraint)
        elif sp_module is not None and hasattr(sp_module, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sp_module.GuidedDecodingParams(**constraint)
        else:
            raise LLMError("this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams")
    return vllm.SamplingParams(**kwargs)


class VLLMBackend(LLM):
    """``vllm.LLM`` in this process; ``engine`` kwargs go to it (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len``...)."""

    def __init__(self, model: str | None = None, **engine: Any) -> None:
        self._vllm = import_vllm()
        self.model_id = model or DEFAULT_VLLM_MODEL
        self.name = f"vllm:{self.model_id}"
        self.llm = self._vllm.LLM(model=self.model_id, **engine)

    def _chat(self, prompts: list[Prompt], params: Any) -> list[Any]:
        t0 = time.perf_counter()
        outputs = self.llm.chat(prompts, params, use_tqdm=False)
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        for out in outputs:
            self.stats.prompt_tokens += len(getattr(out, "prompt_token_ids", None) or [])
            self.stats.generated_tokens += len(out.outputs[0].token_ids or [])
        self.stats.seconds += time.perf_counter() - t0
        return outputs

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
        if not prompts:
            return []
        if choices:
            return [label for label, _ in self.judge(prompts, choices)]
        params = sampling_params(
            self._vllm,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            json_schema=json_schema,
            stop=stop,
            seed=seed,
        )
        texts = [out.outputs[0].text for out in self._chat(prompts, params)]
        # structured decoding makes a failure rare (e.g. max_tokens cut the JSON short): no retry
        return self.enforce(
            texts,
            json_schema=json_schema,
            strict=strict,
            failure=lambda n, _: (
                f"{self.name}: {n} of {len(texts)} outputs are not valid JSON (max_new_tokens too small?)"
            ),
        )

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        if not prompts:
            return []
        params = sampling_params(self._vllm, max_new_tokens=8, temperature=0.0, choices=choices, logprobs=20)
        out = []
        for result in self._chat(prompts, params):
            completion = result.outputs[0]
            label = match_choice(completion.text, choices)
            if label is None:
                raise LLMError(f"{self.name}: judge output {completion.text!r} is not one of {choices}")
            out.append((label, _first_token_probability(completion, choices)))
        return out

    def close(self) -> None:
        self.llm = None


def _first_token_probability(completion: Any, choices: list[str]) -> float | None:
    """P(choices[0]) among the choices from the first generated token's top log-probabilities."""
    steps = getattr(completion, "logprobs", None)
    if not steps:
        return None
    norm = [c.lower() for c in choices]
    mass = [0.0] * len(choices)
    for lp in steps[0].values():
        piece = (getattr(lp, "decoded_token", None) or "").strip().lower()
        if not piece:
            continue
        for k, c in enumerate(norm):
            if c.startswith(piece):
                mass[k] += math.exp(lp.logprob)
                break
    total = sum(mass)
    return mass[0] / total if total > 0 else None
