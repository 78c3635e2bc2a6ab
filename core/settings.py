"""One settings object, read from ``ADAPTRANK_*`` environment variables (CLI flags override).

``ADAPTRANK_HOME`` (default ``~/.adaptrank``) holds ``models/``, ``datasets/``, ``jobs.sqlite``
and ``chroma/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPTRANK_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".adaptrank")

    # Scoring
    default_model: str = Field(
        "zero-shot",
        description="Model used when a request names none: a model-store name, 'zero-shot' "
        "(bi-encoder cosine of the offline MiniLM), or a backend-prefixed spec.",
    )
    device: str | None = Field(None, description="torch device; default cuda when available")
    max_length: int = Field(256, ge=16, le=8192, description="tokens per (query, passage) window")
    window_stride: int = Field(64, ge=0, description="token overlap between windows of a long document")
    long_documents: Literal["maxp", "truncate"] = "maxp"
    batch_tokens: int = Field(16384, ge=256, description="padded tokens per forward pass")
    max_batch_size: int = Field(128, ge=1)
    cache_size: int = Field(100_000, ge=0, description="LRU score-cache entries (0 disables it)")
    microbatch: bool = True
    microbatch_wait_ms: float = Field(2.0, ge=0, le=1000)
    microbatch_tokens: int = Field(
        16384,
        ge=256,
        description="estimated tokens per micro-batcher pass; a large request is scored over several passes, "
        "interleaved with the requests that arrive meanwhile, so it cannot starve them",
    )
    max_loaded_models: int = Field(
        4, ge=1, description="models kept loaded (LRU); the default model is pinned and counts as one"
    )
    onnx: Literal["auto", "off", "fp32", "int8"] = Field(
        "off", description="CPU ONNX Runtime path for cross-encoders (see bench/rerank_throughput.py)"
    )
    precision: Literal["exact", "fast"] = Field(
        "exact",
        description="CPU cross-encoder arithmetic: 'exact' (fp32, scores as sentence-transformers "
        "gives them) or 'fast' (bf16 on CPUs with AMX/AVX512-BF16, else ONNX int8; see docs/engine.md)",
    )

    # Request limits. A request within the character limits always fits the byte limit: 1,000,000
    # characters take at most 12 MB as JSON (12 bytes for a non-BMP character written as two
    # \uXXXX escapes), and 16 MiB leaves room for ids, metadata and the query.
    max_documents: int = Field(1000, ge=1)
    max_query_chars: int = Field(4096, ge=1)
    max_document_chars: int = Field(100_000, ge=1)
    max_total_chars: int = Field(1_000_000, ge=1, description="characters of all documents of one request together")
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="HTTP request body limit, for /v1/rerank and MCP (/mcp) alike"
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(None, description="bearer token required on HTTP when set")
    graceful_shutdown_seconds: float = Field(
        30.0, ge=0, le=3600, description="on a stop, how long running requests may take to finish"
    )
    metrics_public_on_loopback: bool = Field(
        False,
        description="serve GET /metrics without the bearer token to loopback clients (a scraper sidecar); "
        "everyone else still needs the token",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="server logs on stderr: text, or one JSON object per line (adaptrank serve)"
    )
    job_lease_seconds: float = Field(
        30.0,
        ge=0.5,
        le=86400,
        description="a running job's owner renews its lease every third of this; a job whose lease ran out "
        "(its replica or host died) is reported interrupted and any replica may resume it",
    )

    # LLM
    llm_backend: Literal["transformers", "openai", "vllm", "sampling", "llamacpp"] = "transformers"
    llm_model: str | None = None
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="embedded (transformers) LLM weights: auto = bf16 where the GPU or CPU computes it natively"
    )
    openai_base_url: str = "http://127.0.0.1:8001/v1"
    openai_api_key: str = "EMPTY"
    openai_concurrency: int = Field(8, ge=1)
    openai_timeout: float = Field(120.0, gt=0, le=3600, description="seconds before one LLM request counts as hung")
    openai_max_retries: int = Field(
        4, ge=0, le=20, description="retries (with backoff) after a timeout, a refused connection, 429 or 5xx"
    )

    # Document store
    chroma_url: str | None = Field(None, description="http://host:port of a `chroma run` server")
    embedding_model: str | None = Field(None, description="local path or HF id; default offline MiniLM")

    # Paths the server may read corpora and models from (besides ADAPTRANK_HOME).
    allowed_roots: list[Path] = Field(default_factory=list)
    allow_hub_models: bool = Field(
        False,
        description="let requests name Hugging Face hub ids as models (downloaded when the hub is reachable); "
        "the operator's own settings (default_model, llm_model) may always name one",
    )

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"

    @property
    def jobs_db(self) -> Path:
        return self.home / "jobs.sqlite"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings(home=tmp_path)``)."""
    return Settings()
