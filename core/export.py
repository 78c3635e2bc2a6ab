# Over 400 lines: export and import are the two directions of one folder format (layout, meta, card) and read it the same way.
"""Models that travel: export a model-store version as a standard sentence-transformers folder,
and import such a folder as a new version.

What an export holds (loadable with sentence-transformers alone, no adaptrank, no remote code):

* a ``cross-encoder`` version: a sentence-transformers ``CrossEncoder`` folder (the same weights,
  the serving ``max_length`` written into it); ``CrossEncoder(DIR).predict(pairs)`` gives
  adaptrank's scores (for passages that fit ``max_length``: adaptrank scores longer ones with
  overlapping windows (MaxP), ``predict`` truncates);
* a ``bi-encoder`` version: a plain ``SentenceTransformer`` folder;
* a query-encoder ``residual`` version: a ``SentenceTransformer`` whose first module is the
  standard ``Router`` with a ``query`` route (the fine-tuned query tower: Transformer, Pooling,
  Normalize) and a ``document`` route (the frozen prior the passages are embedded with), so
  ``encode_query`` / ``encode_document`` give exactly the vectors adaptrank scores with:
  adaptrank's score is their cosine divided by ``tau`` (0.05 by default), the same ranking;
* ``README.md``: a model card written from ``card.json`` (base model, dataset, method,
  hyper-parameters, metrics before/after, created) and ``adaptrank_export.json`` with the card
  itself, so an import restores it.

A residual model with a cross-encoder correction (``method=residual``: cosine / tau + a
cross-encoder logit) has no standard equivalent and is refused by name.

An import validates the folder by loading it (sentence-transformers, then adaptrank's own serving
code) before the version lands in the store; a bad folder is an :class:`InputError` naming the field.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from adaptrank.core.engine.models import load_version_folder
from adaptrank.core.engine.residual import part_path
from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.modelstore import CARD, ModelRef, ModelStore, validate_name
from adaptrank.core.settings import get_settings

EXPORT_META = "adaptrank_export.json"
FORMAT = 1
#: files of a store version that are adaptrank's own, never part of an export
_STORE_ONLY = {CARD, ".cache"}
_ZERO_SHOT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


# -- export ----------------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION``."""
    name, _, version = str(spec).partition("@")
    validate_name(name, "model")
    if version:
        validate_name(version, "version")
    return name, version or None


def export_model(store: ModelStore, spec: str, out_dir: str | Path, *, max_length: int | None = None) -> dict[str, Any]:
    """Write ``spec`` (``NAME[@VERSION]``, default the active version) to ``out_dir`` as a standard
    sentence-transformers folder. ``out_dir`` must not exist or be empty; it is written through a
    temp folder renamed into place, so a failure leaves nothing behind. ``max_length``: the tokens
    per (query, passage) pair written into an exported cross-encoder (default: the serving
    setting). Returns what was written."""
    name, version = parse_spec(spec)
    ref = store.get(name, version)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("out_dir", f"{str(out)!r} exists and is not an empty folder; pick a new one")
    if max_length is None:
        max_length = get_settings().max_length
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        kind, extra = _write_export(ref, tmp, max_length)
        meta = {
            "format": FORMAT,
            "kind": kind,
            "source": f"{ref.name}@{ref.version}",
            "exported": time.time(),
            **extra,
            "card": ref.card.model_dump(mode="json"),
        }
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2, default=str))
        (tmp / "README.md").write_text(model_card_markdown(ref, kind, extra))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": ref.name, "version": ref.version, "kind": kind, "path": str(out), **extra}


def _write_export(ref: ModelRef, tmp: Path, max_length: int) -> tuple[str, dict[str, Any]]:
    backend = ref.card.backend
    if backend == "cross-encoder":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(str(ref.path), device="cpu", trust_remote_code=False, max_length=max_length)
        ce.save(str(tmp), create_model_card=False)
        return "cross-encoder", {"max_length": max_length}
    if backend == "bi-encoder":
        _copy_weights(ref.path, tmp)
        return "sentence-transformer", {}
    if backend == "residual":
        return _export_residual(ref, tmp)
    raise InputError("model", f"{ref.name}@{ref.version} has backend {backend!r}, which export does not know")


def _copy_weights(src: Path, dst: Path) -> None:
    for entry in src.iterdir():
        if entry.name in _STORE_ONLY or entry.name in {EXPORT_META, "README.md"} or entry.name.startswith(".tmp-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name)
        else:
            shutil.copy2(entry, dst / entry.name)


def _export_residual(ref: ModelRef, tmp: Path) -> tuple[str, dict[str, Any]]:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    from adaptrank.core.engine.biencoder import default_embedding_path

    spec = ref.card.extra.get("residual")
    if not isinstance(spec, dict):
        raise NotFoundError(
            "model", f"{ref.name}@{ref.version} has backend 'residual' but its card has no extra.residual"
        )
    if spec.get("cross_encoder"):
        raise InputError(
            "model",
            f"{ref.name}@{ref.version} is a residual cross-encoder (score = cosine / tau + a cross-encoder "
            "correction); no standard sentence-transformers model computes that sum, so it cannot be "
            "exported. Export a cross-encoder, bi-encoder or query-encoder model (method=query-encoder).",
        )
    prior_spec = spec.get("prior") or ZERO_SHOT
    prior_path = default_embedding_path() if prior_spec == ZERO_SHOT else part_path(ref.path, prior_spec, "prior")
    tau = float(spec.get("tau", 0.05))
    prior = SentenceTransformer(prior_path, device="cpu", trust_remote_code=False)
    if not spec.get("query_encoder"):  # no trained query tower: the prior serves both sides
        prior.save(str(tmp), create_model_card=False)
        return "sentence-transformer", {"tau": tau}
    query = SentenceTransformer(
        part_path(ref.path, spec["query_encoder"], "query encoder"), device="cpu", trust_remote_code=False
    )
    router = Router.for_query_document(query_modules=list(query.children()), document_modules=list(prior.children()))
    # adaptrank encodes each side with that model's default prompt (none for MiniLM); keep it per route
    prompts = {"query": _default_prompt(query), "document": _default_prompt(prior)}
    model = SentenceTransformer(modules=[router], similarity_fn_name="cosine", prompts=prompts, device="cpu")
    model.save(str(tmp), create_model_card=False)
    return "sentence-transformer-router", {
        "tau": tau,
        "query_max_seq_length": query.max_seq_length,
        "document_max_seq_length": prior.max_seq_length,
    }


def _default_prompt(model: Any) -> str:
    name = getattr(model, "default_prompt_name", None)
    return (model.prompts or {}).get(name, "") if name else ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def model_card_markdown(ref: ModelRef, kind: str, extra: dict[str, Any]) -> str:
    """README.md for an exported folder, from the version's ``card.json``."""
    card = ref.card
    hyper = dict(card.hyperparameters)
    method = hyper.get("method") or card.backend
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(card.created))
    base = card.base_model or "unknown"
    ranking = kind == "cross-encoder"
    front = [
        "---",
        "library_name: sentence-transformers",
        f"pipeline_tag: {'text-ranking' if ranking else 'sentence-similarity'}",
        "tags:",
        "- adaptrank",
        "- reranking" if ranking else "- retrieval",
    ]
    if base == "zero-shot":
        front += ["base_model: " + _ZERO_SHOT_HUB_ID]
    front += ["---", ""]
    lines = [f"# {card.name} ({card.version})", ""]
    lines += [f"Exported from the adaptrank model store (`{card.name}@{card.version}`, backend `{card.backend}`).", ""]
    lines += ["## How it was trained", "", "| field | value |", "| --- | --- |"]
    base_note = f"{base} (all-MiniLM-L6-v2, adaptrank's zero-shot bi-encoder)" if base == "zero-shot" else base
    for field, value in [
        ("base model", base_note),
        ("dataset", card.dataset or "unknown"),
        ("method", method),
        ("loss", card.loss or "unknown"),
        ("created", created),
    ]:
        lines.append(f"| {field} | {value} |")
    if "tau" in extra:
        lines.append(f"| tau (adaptrank score = cosine / tau) | {_fmt(extra['tau'])} |")
    lines.append("")
    if hyper:
        lines += ["### Hyper-parameters", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(hyper.items())]
        lines.append("")
    lines += ["## How it was evaluated", ""]
    before, after = card.metrics_before, card.metrics_after
    if before or after:
        baseline = card.extra.get("baseline")
        lines += [
            f"On the dataset's dev split (documents never trained on), against {('`' + baseline + '`') if baseline else 'the model it replaced'}:",
            "",
        ]
        lines += ["| metric | before | after | change |", "| --- | ---: | ---: | ---: |"]
        for key in sorted(set(before) | set(after)):
            b, a = before.get(key), after.get(key)
            delta = f"{a - b:+.4f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
            lines.append(
                f"| {key} | {_fmt(b) if b is not None else ''} | {_fmt(a) if a is not None else ''} | {delta} |"
            )
        lines.append("")
        promo = card.extra.get("promotion") or {}
        if promo.get("reason"):
            lines += [f"Promotion decision: {promo['reason']}.", ""]
    else:
        lines += ["No metrics were recorded for this version.", ""]
    lines += ["## Usage (sentence-transformers alone)", "", "```python"]
    if kind == "cross-encoder":
        lines += [
            "from sentence_transformers import CrossEncoder",
            "",
            'model = CrossEncoder("path/to/this/folder")',
            'scores = model.predict([("what causes gout?", "Gout is caused by uric acid crystals.")])',
        ]
    else:
        lines += [
            "from sentence_transformers import SentenceTransformer",
            "",
            'model = SentenceTransformer("path/to/this/folder")',
            'q = model.encode_query(["what causes gout?"])',
            'd = model.encode_document(["Gout is caused by uric acid crystals."])',
            "cosine = model.similarity(q, d)",
        ]
    lines += ["```", ""]
    if kind == "cross-encoder":
        lines += [
            f"`predict` gives adaptrank's scores for pairs up to {extra.get('max_length')} tokens; "
            "adaptrank scores longer passages with overlapping windows (MaxP) where `predict` truncates.",
            "",
        ]
    elif kind == "sentence-transformer-router":
        lines += [
            "Queries and documents take different paths (a `Router` module): `encode_query` runs the "
            "fine-tuned query tower, `encode_document` the frozen base model, so passage vectors "
            f"already stored with the base model stay valid. adaptrank's score is the cosine / {_fmt(extra['tau'])}: "
            "the same ranking.",
            "",
        ]
    lines += ["Import it back with `adaptrank models import <this folder> <name>`.", ""]
    return "\n".join(front + lines)


# -- import ----------------------------------------------------------------------------------------
def import_model(
    store: ModelStore, src: str | Path, name: str, *, activate: bool | None = None, settings: Any = None
) -> dict[str, Any]:
    """Bring a sentence-transformers folder (``CrossEncoder`` or ``SentenceTransformer``, with or
    without a query/document ``Router``) into the store as a new version of ``name``. The folder
    must load, and the new version must load through adaptrank's serving code, before it lands.
    ``activate``: None activates it only when ``name`` has no active version yet."""
    validate_name(name, "name")
    settings = settings or get_settings()
    root = Path(src)
    if not root.is_dir():
        raise InputError("src", f"{str(root)!r} is not a folder")
    meta = _read_meta(root)
    st_config = _read_st_config(root)
    model_type = st_config.get("model_type")
    if model_type == "CrossEncoder" or (not (root / "modules.json").is_file() and (root / "config.json").is_file()):
        plan = _plan_cross_encoder(root)
    elif model_type not in (None, "SentenceTransformer"):
        raise InputError(
            "config_sentence_transformers.json: model_type",
            f"is {model_type!r}; adaptrank imports a CrossEncoder or a SentenceTransformer",
        )
    elif (root / "modules.json").is_file():
        plan = _plan_sentence_transformer(root, meta, st_config)
    else:
        raise InputError(
            "src",
            f"{str(root)!r} has neither modules.json (a sentence-transformers model) nor config.json (a cross-encoder)",
        )
    old = meta.get("card") if isinstance(meta.get("card"), dict) else {}
    origin = {"imported_from": str(root.resolve()), "imported": time.time(), "format": plan["kind"]}
    if meta:
        origin["exported_from"] = meta.get("source")
    card: dict[str, Any] = {
        "backend": plan["backend"],
        "base_model": old.get("base_model") or str(root.resolve()),
        "dataset": old.get("dataset"),
        "loss": old.get("loss"),
        "hyperparameters": old.get("hyperparameters") or {},
        "metrics_before": old.get("metrics_before") or {},
        "metrics_after": old.get("metrics_after") or {},
        "extra": {**plan["extra"], "origin": origin},
    }
    if old.get("created"):
        card["created"] = old["created"]
    version = store.new_version_id(name)
    with store.writing(name, card, version=version) as tmp:
        plan["write"](tmp)
        try:
            scorer = load_version_folder(
                tmp,
                name=name,
                version=version,
                backend=plan["backend"],
                card={**card, "name": name, "version": version},
                settings=settings,
            )
            scorer.score_pairs([("a question", "a passage")])
        except Exception as exc:
            raise InputError("src", f"{str(root)!r} loaded, but adaptrank cannot serve it: {exc}") from exc
    if activate or (activate is None and store.active_version(name) is None):
        store.activate(name, version)
    ref = store.get(name, version)
    return {
        "name": name,
        "version": version,
        "backend": plan["backend"],
        "kind": plan["kind"],
        "path": str(ref.path),
        "active": ref.active,
    }


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / EXPORT_META
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(EXPORT_META, f"cannot be read as JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(EXPORT_META, "must be a JSON object")
    return meta


def _plan_cross_encoder(root: Path) -> dict[str, Any]:
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError("config.json", f"cannot be read as JSON: {exc}") from exc
    archs = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise InputError(
            "config.json: architectures",
            f"{archs!r} is not a sequence-classification model; a cross-encoder folder has e.g. "
            "'BertForSequenceClassification' (a sentence-transformers model needs modules.json)",
        )
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 1
    if labels != 1:
        raise InputError("config.json: num_labels", f"is {labels}; adaptrank reranks with one-logit cross-encoders")
    try:
        from sentence_transformers import CrossEncoder

        CrossEncoder(str(root), device="cpu", trust_remote_code=False)
    except Exception as exc:
        raise InputError("src", f"{str(root)!r} does not load as a sentence-transformers CrossEncoder: {exc}") from exc
    return {
        "kind": "cross-encoder",
        "backend": "cross-encoder",
        "extra": {},
        "write": lambda tmp: _copy_weights(root, tmp),
    }


def _read_st_config(root: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((root / "config_sentence_transformers.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError("config_sentence_transformers.json", f"cannot be read as JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise InputError("config_sentence_transformers.json", "must be a JSON object")
    return cfg


def _plan_sentence_transformer(root: Path, meta: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    sim = cfg.get("similarity_fn_name")
    if sim not in (None, "cosine"):
        raise InputError(
            "config_sentence_transformers.json: similarity_fn_name",
            f"is {sim!r}; adaptrank scores embedding models by cosine, so this model's scores would change",
        )
    try:
        model = SentenceTransformer(str(root), device="cpu", trust_remote_code=False)
    except Exception as exc:
        raise InputError("src", f"{str(root)!r} does not load as a sentence-transformers model: {exc}") from exc
    modules = list(model.children())
    if not isinstance(modules[0], Router):
        return {
            "kind": "sentence-transformer",
            "backend": "bi-encoder",
            "extra": {},
            "write": lambda tmp: _copy_weights(root, tmp),
        }
    router: Router = modules[0]
    rest = modules[1:]
    routes = {}
    for task in ("query", "document"):
        try:
            routes[task] = router._resolve_route(task=task, modality="text")
        except Exception as exc:
            raise InputError("router_config.json: structure", f"has no route for task={task!r}: {exc}") from exc
    tau = float(meta.get("tau", 1.0)) if meta.get("kind") == "sentence-transformer-router" else 1.0
    if not tau > 0:
        raise InputError(f"{EXPORT_META}: tau", f"must be > 0, got {tau}")

    def side(task: str) -> Any:
        part = SentenceTransformer(
            modules=[*router.sub_modules[routes[task]], *rest], device="cpu", similarity_fn_name="cosine"
        )
        prompt = (model.prompts or {}).get(task) or ""
        if prompt:
            part.prompts = {task: prompt}
            part.default_prompt_name = task
        return part

    query, document = side("query"), side("document")
    prior = "zero-shot" if _is_zero_shot(document) else "prior"

    def write(tmp: Path) -> None:
        query.save(str(tmp / "query_encoder"), create_model_card=False)
        if prior != "zero-shot":
            document.save(str(tmp / "prior"), create_model_card=False)

    extra = {"residual": {"prior": prior, "tau": tau, "query_encoder": "query_encoder", "cross_encoder": None}}
    return {"kind": "sentence-transformer-router", "backend": "residual", "extra": extra, "write": write}


def _is_zero_shot(model: Any) -> bool:
    """True when ``model`` is the zero-shot default (same modules, weights and length): then the
    imported version uses the default's folder, and passage vectors Chroma stored with it stay valid."""
    import torch
    from sentence_transformers import SentenceTransformer

    from adaptrank.core.engine.biencoder import default_embedding_path

    default = SentenceTransformer(default_embedding_path(), device="cpu", trust_remote_code=False)
    if [type(m) for m in default.children()] != [type(m) for m in model.children()]:
        return False
    if default.max_seq_length != model.max_seq_length or _default_prompt(model) != _default_prompt(default):
        return False
    a, b = default.state_dict(), model.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
