"""Training datasets: versioned groups of (query, positive, hard negatives) on disk.

Layout (``settings.datasets_dir``)::

    <name>/LATEST                  # the newest complete version (atomic pointer)
    <name>/<version>/train.jsonl   # one Group per line
    <name>/<version>/dev.jsonl     # split by DOCUMENT: no document has queries in both splits
    <name>/<version>/card.json     # source, LLM, prompt version, counts, label stats, timings

Versions are written into a hidden temp directory and renamed into place, then ``LATEST`` is
replaced with ``os.replace`` — the model store's scheme (:mod:`adaptrank.core.versioned`), so a
crash never leaves a half-written dataset that a fine-tuning job could pick up.

The JSONL files read directly with the ``datasets`` library::

    datasets.load_dataset("json", data_files={"train": ".../train.jsonl", "dev": ".../dev.jsonl"})

(:func:`to_hf_dataset` does that, with explicit features so empty lists type correctly).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError, write_failure
from adaptrank.core.settings import Settings, get_settings
from adaptrank.core.versioned import CARD, VersionedStore, dump_json, validate_name, write_atomic

LATEST = "LATEST"
SPLITS = ("train", "dev")
Split = Literal["train", "dev"]


class Group(BaseModel):
    """One training group: a query, its positive passage and hard negatives.

    ``doc_id`` is the *source document* of the positive (chunks of one document share it); the
    train/dev split is by this id. ``negative_scores[i]`` is the judge's probability that
    ``negatives[i]`` is relevant where the backend exposes one (None otherwise, [] with no judge).
    """

    query: str = Field(min_length=1)
    positive: str = Field(min_length=1)
    negatives: list[str] = Field(default_factory=list)
    doc_id: str = Field(min_length=1)
    extra_positives: list[str] = Field(default_factory=list)
    negative_ids: list[str] = Field(default_factory=list)
    negative_scores: list[float | None] = Field(default_factory=list)
    query_type: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class DatasetCard(BaseModel):
    """How a dataset came to be; enough to reproduce it and to judge it."""

    name: str
    version: str
    created: float = Field(default_factory=time.time)
    source: dict[str, Any] = Field(default_factory=dict, description="kind, collection/path, documents")
    llm: str | None = None
    judge: str | None = Field(None, description="judge LLM name; None when the judge was off")
    prompt_versions: dict[str, str] = Field(default_factory=dict, description="step -> template@version")
    parameters: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict, description="groups, train, dev, documents, ...")
    label_stats: dict[str, Any] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict, description="reason -> items skipped")
    retried: int = 0
    seconds: dict[str, float] = Field(default_factory=dict, description="stage -> wall seconds")
    extra: dict[str, Any] = Field(default_factory=dict)


class DatasetRef(BaseModel):
    name: str
    version: str
    path: Path
    card: DatasetCard
    latest: bool = False

    def file(self, split: Split = "train") -> Path:
        return self.path / f"{_check_split(split)}.jsonl"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError("split", f"{split!r} is not one of {list(SPLITS)}")
    return split


def split_by_document(
    groups: Sequence[Group], dev_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Group], list[Group]]:
    """Split groups so that every document's queries land in one split only.

    The documents are sorted then shuffled with ``seed``, so the split depends only on the set of
    documents (not on the order groups were produced — a resumed job gets the same split).
    With two or more documents and ``dev_fraction > 0``, dev gets at least one document and train
    keeps at least one.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise InputError("dev_fraction", f"{dev_fraction} must be in [0, 1)")
    docs = sorted({g.doc_id for g in groups})
    random.Random(seed).shuffle(docs)
    n_dev = round(len(docs) * dev_fraction)
    if dev_fraction > 0 and len(docs) >= 2:
        n_dev = min(max(n_dev, 1), len(docs) - 1)
    dev_docs = set(docs[:n_dev])
    train = [g for g in groups if g.doc_id not in dev_docs]
    dev = [g for g in groups if g.doc_id in dev_docs]
    return train, dev


def write_groups(path: Path, groups: Iterable[Group]) -> int:
    """Atomically write groups as JSONL; returns the count."""
    lines = [g.model_dump_json() for g in groups]
    write_atomic(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def read_groups(path: Path | str, *, allow_empty: bool = False) -> list[Group]:
    """Read a JSONL file of groups; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"dataset file {path} does not exist")
    groups: list[Group] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                groups.append(Group.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise InputError("dataset", f"{path} line {n}: {where}: {first['msg']}") from None
    if not groups and not allow_empty:
        raise InputError("dataset", f"{path} has no groups")
    return groups


def hf_features():
    """``datasets.Features`` for a group file (explicit, so all-empty list columns type as strings)."""
    import datasets

    return datasets.Features(
        {
            "query": datasets.Value("string"),
            "positive": datasets.Value("string"),
            "negatives": datasets.List(datasets.Value("string")),
            "doc_id": datasets.Value("string"),
            "extra_positives": datasets.List(datasets.Value("string")),
            "negative_ids": datasets.List(datasets.Value("string")),
            "negative_scores": datasets.List(datasets.Value("float64")),
            "query_type": datasets.Value("string"),
            "meta": datasets.Value("string"),
        }
    )


def to_hf_dataset(source: DatasetRef | Sequence[Group] | Path | str, split: Split = "train"):
    """A ``datasets.Dataset`` from a stored version, a JSONL path or a list of groups.

    ``meta`` is free-form, so it is carried as a JSON string column (Arrow needs one schema).
    """
    import datasets

    if isinstance(source, DatasetRef):
        source = source.file(split)
    groups = read_groups(source) if isinstance(source, (str, Path)) else list(source)
    rows = [{**g.model_dump(), "meta": json.dumps(g.meta, sort_keys=True)} for g in groups]
    return datasets.Dataset.from_list(rows, features=hf_features())


class DatasetStore(VersionedStore):
    """Versioned datasets under ``settings.datasets_dir``."""

    kind = "dataset"
    pointer = LATEST

    def __init__(self, settings: Settings | None = None, root: Path | None = None) -> None:
        if root is None:
            if settings is None:
                settings = get_settings()
            root = settings.datasets_dir
        super().__init__(root)

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names with at least one complete version."""
        return [n for n in super().names() if self.versions(n)]

    def latest_version(self, name: str) -> str | None:
        return self.pointed_version(name)

    def get(self, name: str, version: str | None = None) -> DatasetRef:
        """The named version (or LATEST); NotFoundError names what exists."""
        version, path, latest = self.locate(name, version, "does not exist")
        card = DatasetCard.model_validate_json((path / CARD).read_text())
        return DatasetRef(name=name, version=version, path=path, card=card, latest=version == latest)

    def card(self, name: str, version: str | None = None) -> DatasetCard:
        return self.get(name, version).card

    def load(
        self, name: str, version: str | None = None, split: Split = "train", *, allow_empty: bool | None = None
    ) -> list[Group]:
        """Groups of one split. An empty train split is an error; an empty dev split is allowed by
        default (a one-document dataset has none)."""
        ref = self.get(name, version)
        if allow_empty is None:
            allow_empty = split == "dev"
        return read_groups(ref.file(split), allow_empty=allow_empty)

    def list(self) -> list[DatasetRef]:
        return [self.get(n, v) for n in self.names() for v in self.versions(n)]

    def to_hf_dataset(self, name: str, version: str | None = None, split: Split = "train"):
        return to_hf_dataset(self.get(name, version), split)

    # -- writing -------------------------------------------------------------------------------
    def write(
        self,
        name: str,
        groups: Sequence[Group] | None = None,
        card: DatasetCard | dict[str, Any] | None = None,
        *,
        train: Sequence[Group] | None = None,
        dev: Sequence[Group] | None = None,
        dev_fraction: float = 0.1,
        seed: int = 0,
        version: str | None = None,
    ) -> DatasetRef:
        """Write a new version and point LATEST at it.

        Pass ``groups`` (split here by document with ``dev_fraction``/``seed``) or explicit
        ``train``/``dev``. Refuses an empty train split: a dataset with no groups is an error,
        never a silent success.
        """
        validate_name(name, "dataset")
        if groups is not None:
            if train is not None or dev is not None:
                raise InputError("groups", "pass either groups or train/dev, not both")
            train, dev = split_by_document(groups, dev_fraction, seed)
        train, dev = list(train or []), list(dev or [])
        if not train:
            raise InputError("groups", f"dataset {name!r} would have no training groups")
        overlap = {g.doc_id for g in train} & {g.doc_id for g in dev}
        if overlap:
            raise InputError("dev", f"documents in both splits: {sorted(overlap)[:5]}")
        version = validate_name(version, "version") if version else self.new_version_id(name)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / version).exists():
            raise InputError("version", f"dataset {name}/{version} already exists")

        data = card.model_dump() if isinstance(card, DatasetCard) else dict(card or {})
        data.update(name=name, version=version)
        counts = dict(data.get("counts") or {})
        counts.update(
            groups=len(train) + len(dev),
            train=len(train),
            dev=len(dev),
            documents=len({g.doc_id for g in train} | {g.doc_id for g in dev}),
            train_documents=len({g.doc_id for g in train}),
            dev_documents=len({g.doc_id for g in dev}),
        )
        data["counts"] = counts
        data.setdefault("label_stats", {}).update(label_stats(train + dev))
        card_obj = DatasetCard.model_validate(data)

        try:
            with self.writing_version(name, version, f"dataset {name}/{version} already exists") as tmp:
                write_groups(tmp / "train.jsonl", train)
                write_groups(tmp / "dev.jsonl", dev)
                dump_json(tmp / CARD, card_obj.model_dump(mode="json"))
        except OSError as exc:
            reason = write_failure(exc)
            if reason is not None:
                raise AdaptRankError(
                    f"could not save dataset {name!r} to {self.root}: {reason}; nothing was written "
                    "and the latest version is unchanged"
                ) from exc
            raise
        self.set_pointer(name, version)
        return self.get(name, version)


def label_stats(groups: Sequence[Group]) -> dict[str, Any]:
    """Summary figures for the card: negatives and extra positives per group, judge scores."""
    n = len(groups) or 1
    negs = [len(g.negatives) for g in groups]
    scores = [s for g in groups for s in g.negative_scores if s is not None]
    qtypes: dict[str, int] = {}
    for g in groups:
        if g.query_type:
            qtypes[g.query_type] = qtypes.get(g.query_type, 0) + 1
    return {
        "negatives_per_group_mean": round(sum(negs) / n, 3),
        "negatives_per_group_min": min(negs, default=0),
        "negatives_per_group_max": max(negs, default=0),
        "groups_without_negatives": sum(1 for k in negs if k == 0),
        "extra_positives_total": sum(len(g.extra_positives) for g in groups),
        "groups_with_extra_positives": sum(1 for g in groups if g.extra_positives),
        "negative_judge_score_mean": round(sum(scores) / len(scores), 4) if scores else None,
        "query_types": dict(sorted(qtypes.items())),
    }
