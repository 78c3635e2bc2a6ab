#!/usr/bin/env bash
# One command for a new user: install, show a rerank working on the embedded offline model,
# then serve MCP (streamable HTTP at http://127.0.0.1:8000/mcp) and the Cohere-compatible
# POST /v1/rerank on the same port. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/adaptrank rerank "What causes gout?" \
  "Gout is caused by a buildup of uric acid crystals in the joints." \
  "Paris is the capital of France." \
  "Treatment of gout includes NSAIDs, colchicine and corticosteroids."
exec .venv/bin/adaptrank serve --transport http --host 127.0.0.1 --port "${ADAPTRANK_PORT:-8000}"
