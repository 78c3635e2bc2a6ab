#!/usr/bin/env bash
# What CI runs after scripts/install.sh --dev: lint, format, the layer contract, then the tests.
#   scripts/check.sh            everything
#   scripts/check.sh -m "not slow"   (arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bin=.venv/bin
[[ -n "${VIRTUAL_ENV:-}" ]] && bin="$VIRTUAL_ENV/bin"
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/lint-imports"
"$bin/pytest" "$@"
