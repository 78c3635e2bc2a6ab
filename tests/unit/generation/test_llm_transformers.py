"""The transformers backend's mechanics on a tiny random Llama with SmolLM2's tokenizer:
left-padded batches equal one-at-a-time, scored choices with probabilities, JSON enforcement,
stop strings, stats. (The real SmolLM2 runs in tests/integration/test_generation_real.py.)"""

from __future__ import annotations

import pytest

from adaptrank.core.llm import LLMError
from adaptrank.core.llm.hf import TransformersLLM, resolve_model

PROMPTS = [
    [{"role": "user", "content": "Write a question about gout."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A much longer prompt about asthma, " * 5}],
    [{"role": "user", "content": "Hi"}],
]


@pytest.fixture(scope="module")
def llm(tiny_chat_lm):
    return TransformersLLM(tiny_chat_lm, batch_size=2, threads=1)


def test_batched_generation_equals_one_at_a_time(llm):
    llm.stats.reset()
    batched = llm.generate(PROMPTS, max_new_tokens=6)
    single = [llm.generate([p], max_new_tokens=6)[0] for p in PROMPTS]
    assert batched == single and all(isinstance(t, str) for t in batched)
    assert llm.stats.calls == 4 and llm.stats.prompts == 6
    assert 0 < llm.stats.generated_tokens <= 36 and llm.stats.prompt_tokens > 0


def test_choices_are_scored_with_probabilities(llm):
    out = llm.judge(PROMPTS, ["yes", "no"])
    assert [label for label, _ in out] == llm.generate(PROMPTS, choices=["yes", "no"])
    for label, p_yes in out:
        assert label in ("yes", "no") and 0.0 <= p_yes <= 1.0
        assert (label == "yes") == (p_yes >= 0.5)
    # choices that share a first token are scored as whole sequences
    shared = llm.judge(PROMPTS[:1], ["relevant", "relevance"])
    assert shared[0][0] in ("relevant", "relevance") and 0 <= shared[0][1] <= 1
    with pytest.raises(Exception, match="at least two"):
        llm.judge(PROMPTS[:1], ["yes"])


def test_json_schema_is_enforced_with_retries(llm):
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    llm.stats.reset()
    with pytest.raises(LLMError, match="never matched the JSON schema"):
        llm.generate(PROMPTS[:2], max_new_tokens=4, json_schema=schema)  # a random model writes no JSON
    assert llm.stats.retries == 2 * llm.json_retries and llm.stats.invalid == 2
    raw = llm.generate(PROMPTS[:2], max_new_tokens=4, json_schema=schema, strict=False)
    assert len(raw) == 2  # best effort texts for the caller to skip


def test_stop_strings_cut_the_text(llm):
    full = llm.generate(PROMPTS[:1], max_new_tokens=12)[0]
    if full.strip():
        cut = full.strip()[0]
        stopped = llm.generate(PROMPTS[:1], max_new_tokens=12, stop=[cut])[0]
        assert cut not in stopped and full.startswith(stopped)


def test_model_specs(tmp_path):
    path, gguf, label = resolve_model(None)
    assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf" and label == "SmolLM2-135M-Instruct"
    assert resolve_model("org/name") == ("org/name", None, "org/name")
    with pytest.raises(Exception, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_shared_prefix_cache_changes_nothing_but_the_work(tiny_chat_lm):
    system = {"role": "system", "content": "You judge search results. " * 8}  # a long shared prefix
    prompts = [[system, {"role": "user", "content": f"Query {q}\nPassage: {p}"}]
               for q, p in [("gout", "uric acid"), ("asthma causes", "airways narrow " * 4), ("x", "y")]]
    cached = TransformersLLM(tiny_chat_lm, batch_size=2, threads=1)
    plain = TransformersLLM(tiny_chat_lm, batch_size=2, threads=1, prefix_cache=False)
    assert cached._prefix(cached._encode(prompts))[0] >= 32
    a, b = cached.judge(prompts, ["yes", "no"]), plain.judge(prompts, ["yes", "no"])
    assert [x[0] for x in a] == [x[0] for x in b]
    assert [x[1] for x in a] == pytest.approx([x[1] for x in b], abs=1e-4)
    assert cached.generate(prompts, max_new_tokens=5) == plain.generate(prompts, max_new_tokens=5)
    assert cached.stats.prompt_tokens < plain.stats.prompt_tokens  # the prefix was computed once


def test_loglikelihood_matches_a_direct_computation(tiny_chat_lm):
    import torch

    llm = TransformersLLM(tiny_chat_lm, batch_size=2, threads=1, dtype="float32")
    system = {"role": "system", "content": "You write the search question a user would type. " * 4}
    prompts = [[system, {"role": "user", "content": f"Passage: {p}"}] for p in ("uric acid", "airways narrow in asthma", "x")]
    conts = ["What causes gout?", "How is asthma treated?", "Why?"]
    got = llm.loglikelihood(prompts, conts)
    tok = llm.tokenizer
    for prompt, cont, value in zip(prompts, conts, got):
        head = tok(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
        tail = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = llm.model(input_ids=torch.tensor([head + tail])).logits[0].float().log_softmax(-1)
        expected = logp[len(head) - 1 : -1].gather(-1, torch.tensor(tail)[:, None]).mean().item()
        assert value == pytest.approx(expected, abs=1e-3)
    with pytest.raises(Exception, match="one continuation per prompt"):
        llm.loglikelihood(prompts, conts[:1])


def test_thread_governor_follows_what_other_processes_use(monkeypatch):
    """Fewer torch threads while other processes hold cores, all of them back when they leave, and
    the caller's thread count restored after every call (fine-tuning shares the process)."""
    import torch

    from adaptrank.core.llm.hf import _ThreadGovernor

    before = torch.get_num_threads()
    gov = _ThreadGovernor(2)
    # (CPU-seconds busy on the whole machine, this process's CPU-seconds, wall seconds)
    samples = iter([(0.0, 0.0, 0.0), (20.0, 10.0, 10.0), (40.0, 20.0, 20.0), (50.0, 30.0, 30.0), (50.0, 30.0, 30.1)])
    monkeypatch.setattr(gov, "_sample", lambda: next(samples))
    try:
        assert gov.pick() == 2  # nothing measured yet: every thread
        assert gov.pick() == 1 and torch.get_num_threads() == 1  # others kept one core busy
        assert gov.pick() == 1
        assert gov.pick() == 2  # only this process was busy
        assert gov.pick() == 2  # too short to measure: no change
        gov.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_explicit_threads_are_never_changed(tiny_chat_lm):
    llm = TransformersLLM(tiny_chat_lm, batch_size=2, threads=1)
    assert llm._governor is None
