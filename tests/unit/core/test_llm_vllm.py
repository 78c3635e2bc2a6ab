"""The in-process vLLM backend with a fake ``vllm`` module injected via sys.modules (vLLM is never
installed here): the import guard, SamplingParams/structured-outputs mapping for both vLLM API
generations, generation and judge probabilities."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass, field

import pytest

from adaptrank.core.errors import MissingExtraError
from adaptrank.core.llm import get_llm
from adaptrank.core.llm.vllm_backend import VLLMBackend, sampling_params
from adaptrank.core.settings import Settings


@dataclass
class Logprob:
    logprob: float
    decoded_token: str


@dataclass
class Completion:
    text: str
    token_ids: list = field(default_factory=lambda: [1, 2, 3])
    logprobs: list | None = None


@dataclass
class RequestOutput:
    outputs: list
    prompt_token_ids: list = field(default_factory=lambda: [0] * 7)


def fake_vllm(new_api: bool = True):
    mod = types.ModuleType("vllm")
    sp = types.ModuleType("vllm.sampling_params")

    class Params:
        def __init__(self, **kw):
            self.kw = kw

    if new_api:
        sp.StructuredOutputsParams = type("StructuredOutputsParams", (Params,), {})
    else:
        sp.GuidedDecodingParams = type("GuidedDecodingParams", (Params,), {})

    class SamplingParams(Params):
        pass

    class LLM:
        instances = []

        def __init__(self, model, **engine):
            self.model, self.engine, self.calls = model, engine, []
            LLM.instances.append(self)

        def chat(self, messages, params, use_tqdm=True):
            self.calls.append((messages, params, use_tqdm))
            out = []
            for m in messages:
                so = params.kw.get("structured_outputs") or params.kw.get("guided_decoding")
                if so is not None and "choice" in so.kw:
                    lp = {
                        1: Logprob(math.log(0.2), "yes"),
                        2: Logprob(math.log(0.6), "no"),
                        3: Logprob(math.log(0.2), "maybe"),
                    }
                    out.append(RequestOutput([Completion("no", [2], [lp])]))
                elif so is not None and "json" in so.kw:
                    out.append(RequestOutput([Completion('{"q": "' + m[-1]["content"] + '"}')]))
                else:
                    out.append(RequestOutput([Completion("text for " + m[-1]["content"])]))
            return out

    mod.LLM, mod.SamplingParams, mod.sampling_params = LLM, SamplingParams, sp
    return mod


@pytest.fixture
def vllm(monkeypatch):
    mod = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", mod.sampling_params)
    return mod


def test_import_guard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # "not installed"
    with pytest.raises(MissingExtraError, match=r"pip install 'adaptrank\[vllm\]'"):
        get_llm(Settings(), "vllm", "some/model")


def test_sampling_params_mapping_both_api_generations():
    for new_api, attr in ((True, "structured_outputs"), (False, "guided_decoding")):
        mod = fake_vllm(new_api)
        p = sampling_params(
            mod, max_new_tokens=9, temperature=0.5, json_schema={"type": "object"}, stop=["\n"], seed=3, logprobs=5
        )
        assert p.kw["max_tokens"] == 9 and p.kw["temperature"] == 0.5 and p.kw["stop"] == ["\n"]
        assert p.kw["seed"] == 3 and p.kw["logprobs"] == 5 and p.kw[attr].kw == {"json": {"type": "object"}}
        c = sampling_params(mod, max_new_tokens=2, temperature=0.0, choices=["yes", "no"], seed=3)
        assert c.kw[attr].kw == {"choice": ["yes", "no"]} and "seed" not in c.kw  # greedy: no seed
        plain = sampling_params(mod, max_new_tokens=2, temperature=0.0)
        assert set(plain.kw) == {"max_tokens", "temperature"}


def test_generate_and_judge(vllm):
    llm = VLLMBackend("org/model", tensor_parallel_size=2)
    engine = vllm.LLM.instances[-1]
    assert engine.model == "org/model" and engine.engine == {"tensor_parallel_size": 2} and llm.name == "vllm:org/model"
    prompts = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    assert llm.generate(prompts, max_new_tokens=4) == ["text for a", "text for b"]
    assert len(engine.calls) == 1 and engine.calls[0][2] is False  # one batched call, no tqdm
    assert llm.generate(prompts, json_schema={"type": "object", "required": ["q"]}) == ['{"q": "a"}', '{"q": "b"}']
    judged = llm.judge(prompts, ["yes", "no"])
    assert [label for label, _ in judged] == ["no", "no"] and judged[0][1] == pytest.approx(0.25)
    assert llm.stats.prompt_tokens == 42 and llm.stats.prompts == 6
