"""Embedded LLM backends side by side on the same prompts: transformers vs llama.cpp.

16 query-generation prompts and 16 judge prompts from medquad-dev; each backend generates the
queries (greedy, stop at a newline) and scores the judge prompts (yes/no). Prints wall time and
tokens/s. llama.cpp runs only where ``llama-cpp-python`` is installed (the ``llamacpp`` extra).

    python bench/llm_backends.py                     # transformers, then llama.cpp with 1 and 2 threads
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _medquad import DATA  # where medquad-dev lies: one place for every bench


def run(llm, gen_prompts, judge_prompts) -> None:
    llm.generate(gen_prompts[:1], max_new_tokens=8)  # warm-up
    llm.stats.reset()
    t0 = time.perf_counter()
    out = llm.generate(gen_prompts, max_new_tokens=48, stop=["\n"])
    dt = time.perf_counter() - t0
    print(
        f"  generate {len(gen_prompts)}: {dt:.1f} s, {llm.stats.generated_tokens} tokens, "
        f"{llm.stats.generated_tokens / dt:.1f} tokens/s; e.g. {out[1]!r}"
    )
    t0 = time.perf_counter()
    llm.judge(judge_prompts, ["yes", "no"])
    print(f"  judge {len(judge_prompts)}: {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--llamacpp-threads", default="1,2")
    args = ap.parse_args()

    from adaptrank.core.beir import load_beir
    from adaptrank.core.prompts import judge_prompt, querygen_typed_prompt

    data = load_beir(args.data, corpus_limit=25 * args.n)
    ids = list(data.corpus)[::25][: args.n]
    passages = [data.doc_text(i) for i in ids]
    gen_prompts = [querygen_typed_prompt(p, "symptoms") for p in passages]
    judge_prompts = [judge_prompt(q, p) for q, p in zip(list(data.queries.values())[: args.n], passages, strict=False)]
    print(f"load average {os.getloadavg()[0]:.1f} (the machine is shared)")

    from adaptrank.core.llm.hf import TransformersLLM

    t0 = time.perf_counter()
    llm = TransformersLLM()
    print(f"transformers ({llm.dtype}, {llm.threads} threads, loaded in {time.perf_counter() - t0:.0f} s)")
    run(llm, gen_prompts, judge_prompts)
    llm.close()

    try:
        from adaptrank.core.llm.llamacpp import LlamaCppLLM
    except ImportError:
        return
    for threads in (int(t) for t in args.llamacpp_threads.split(",")):
        try:
            lc = LlamaCppLLM(n_threads=threads)
        except Exception as exc:  # noqa: BLE001 - not installed (MissingExtraError) or a broken build
            print(f"llama.cpp unavailable: {exc}")
            return
        print(f"llama.cpp ({threads} threads)")
        run(lc, gen_prompts, judge_prompts)
        lc.close()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
