"""Model specs: one canonical spelling per model, and which specs a *request* may name.

A spec names a model in one of these ways (see :mod:`adaptrank.core.engine.registry`): ``zero-shot``,
a model-store name (``med``, ``med@v2026...``), a backend-prefixed target
(``cross-encoder:<path or hub id>``, ``bi-encoder:<path or hub id>``), a bare local folder, or a
hub id (``org/name``). Paths have many spellings (``p``, ``p/``, ``p//``, ``p/.``, ``p/../p``);
:func:`canonical_target` folds them into one name and :func:`identity` into one key (symlinks
followed), so the engine keeps one copy of each model.

:class:`ModelAccess` is the server's rule for what a request may name: the built-in ``zero-shot``,
the operator's default model, model-store models, model folders inside the allowed roots
(``ADAPTRANK_ALLOWED_ROOTS`` and ``ADAPTRANK_HOME``), and hub ids only when the operator sets
``ADAPTRANK_ALLOW_HUB_MODELS=true``. Everything else gets one and the same error, whether the
folder is missing, exists outside the roots, or exists but holds no loadable model, so a request
cannot probe what exists on the server's disk. Library and CLI callers (the local user) do not use
it: they may load anything they can read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from adaptrank.core.errors import NotFoundError
from adaptrank.core.modelstore import NAME_RE, ModelStore
from adaptrank.core.paths import allowed_roots
from adaptrank.core.settings import Settings

ZERO_SHOT = "zero-shot"
BACKEND_PREFIXES = ("cross-encoder", "bi-encoder")
#: a Hugging Face hub id: ``org/name`` (one slash, no path tricks)
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
#: files that make a folder a model folder (transformers, sentence-transformers, a GGUF LLM)
MODEL_MARKERS = ("config.json", "modules.json")
#: LLM backends whose ``llm_model`` names weights on this machine (a path or a hub id); the others
#: (``openai``: a model the operator's endpoint serves; ``sampling``: a hint to the client) read no file.
LOCAL_LLM_BACKENDS = ("transformers", "llamacpp", "vllm")


def split_prefix(spec: str) -> tuple[str | None, str]:
    """``("bi-encoder", "<target>")`` for a prefixed spec, else ``(None, spec)``."""
    for backend in BACKEND_PREFIXES:
        if spec.startswith(backend + ":"):
            return backend, spec[len(backend) + 1 :]
    return None, spec


def canonical_target(target: str) -> str:
    """One spelling per path: ``~`` expanded, ``.``/``..``/repeated and trailing slashes folded.

    Hub ids pass through unchanged (``os.path.normpath`` leaves ``org/name`` as it is). Symlinks
    are *not* followed here (the name a caller sees stays theirs); :func:`identity` follows them.
    """
    if not target:
        return target
    norm = os.path.normpath(os.path.expanduser(target))
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm  # POSIX keeps a leading '//'


def identity(backend: str, target: str) -> str:
    """What makes two specs the same loaded model: the backend and the real path (symlinks
    followed) of a local folder, or the hub id."""
    if os.path.isdir(target):
        return f"{backend}:{os.path.realpath(target)}"
    return f"{backend}:{target}"


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in MODEL_MARKERS)


class ModelAccess:
    """What a request may name as a model (the server applies it; see the module docstring)."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store

    def check(self, spec: str | None, field: str = "model") -> str | None:
        """``spec`` if a request may name it (``None``: the default), else a ``NotFoundError``
        that says the same thing for every refused spec."""
        if spec is None or spec in (ZERO_SHOT, self.settings.default_model):
            return spec
        if not isinstance(spec, str) or not spec or "\0" in spec or len(spec) > 4096:
            raise self.refused(spec, field)
        if self._store_name(spec):
            return spec
        backend, target = split_prefix(spec)
        if target and self._is_default_path(backend, target):
            return spec  # the default model, spelled differently
        if self._local_ok(target) or self._hub_ok(target):
            return spec
        raise self.refused(spec, field)

    def check_llm(self, backend: str | None, model: str | None, field: str = "llm_model") -> str | None:
        """The same rule for an LLM: ``model`` names weights only for the local backends."""
        backend = backend or self.settings.llm_backend
        if model in (None, "", "default", self.settings.llm_model) or backend not in LOCAL_LLM_BACKENDS:
            return model
        if not isinstance(model, str) or "\0" in model or len(model) > 4096:
            raise self.refused(model, field, llm=True)
        path = self._inside(model)
        if path is not None and (is_model_folder(path) or (path.is_file() and path.suffix == ".gguf")):
            return model
        if self._hub_ok(model):
            return model
        raise self.refused(model, field, llm=True)

    def refused(self, spec: object, field: str, *, llm: bool = False) -> NotFoundError:
        hub = (
            "or a hub id 'org/name'"
            if self.settings.allow_hub_models
            else "(hub ids are off: the operator enables them with ADAPTRANK_ALLOW_HUB_MODELS=true)"
        )
        shown = repr(spec)[:200]
        if llm:
            return NotFoundError(
                field,
                f"unknown model {shown}; a request may name the built-in default, the server's LLM, "
                f"or a model folder or .gguf file inside the allowed roots {hub}",
            )
        return NotFoundError(
            field,
            f"unknown model {shown}. Known: {[ZERO_SHOT, *self.store.names()]}; a request may also "
            f"name the default model or a model folder inside the allowed roots {hub}",
        )

    # -- the rules ---------------------------------------------------------------------------------
    def _store_name(self, spec: str) -> bool:
        name = spec.partition("@")[0]
        return bool(NAME_RE.match(name)) and bool(self.store.versions(name))

    def _is_default_path(self, backend: str | None, target: str) -> bool:
        default_backend, default_target = split_prefix(self.settings.default_model)
        if default_backend is None and not os.path.isdir(default_target):
            return False  # the default is a store name or zero-shot: no other spelling
        same_backend = (backend or "cross-encoder") == (default_backend or "cross-encoder")
        return same_backend and canonical_target(target) == canonical_target(default_target)

    def _inside(self, target: str) -> Path | None:
        """The resolved path if ``target`` lies inside an allowed root, else None (never an error
        that depends on what exists outside them)."""
        try:
            resolved = Path(target).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        roots = allowed_roots(self.settings)
        return resolved if any(resolved == r or resolved.is_relative_to(r) for r in roots) else None

    def _local_ok(self, target: str) -> bool:
        path = self._inside(target)
        return path is not None and is_model_folder(path)

    def _hub_ok(self, target: str) -> bool:
        """A hub id, when the operator allows them, and only if no local folder of that name
        exists (loaders would read the local folder first, outside the roots check)."""
        return bool(self.settings.allow_hub_models and HUB_ID_RE.match(target) and not os.path.lexists(target))
