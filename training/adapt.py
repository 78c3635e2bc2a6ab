"""Self-adaptation in one call: generate → fine-tune → evaluate → promote.

``adapt(AdaptParams(collection="docs"), settings)`` writes a synthetic dataset from the team's
documents (:mod:`.generate`), fine-tunes the reranker on it (:mod:`.finetune`, which promotes the
new version only if it beats the active model — or the zero-shot default — on the dataset's dev
split), and, when the source is a BEIR folder with real questions and qrels, evaluates BM25, the
zero-shot default, the previous active model and the new one on them (:mod:`.evaluate`). The real
questions are never used for training: generation reads ``corpus.jsonl`` only.

The defaults are the recipe measured in docs/finetuning.md for a 2-core CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from adaptrank.core.modelstore import ModelStore
from adaptrank.core.paths import allowed_roots
from adaptrank.core.progress import StepProgress
from adaptrank.core.settings import Settings, get_settings
from adaptrank.training import promotion
from adaptrank.training.params import (
    DEFAULT_INTERPOLATION,
    BaseModelSpec,
    Depth,
    Epochs,
    GroupSize,
    Interpolation,
    Judge,
    LearningRate,
    MaxDocuments,
    MaxMinutes,
    MaxQueries,
    Method,
    Negatives,
    Promote,
    QueriesPerDocument,
    QueryLog,
    QuestionTypes,
    check_name,
    field_error,
)

STAGES = ("generate", "finetune", "evaluate")
#: the part of ``max_minutes`` kept for fine-tuning (about 1.2 of 20 minutes on a 2-core CPU without AMX)
FINETUNE_SHARE = 0.15


class AdaptParams(BaseModel):
    collection: str | None = Field(None, description="Chroma collection holding the team's documents")
    path: str | None = Field(
        None, description="or a BEIR folder (corpus.jsonl; queries+qrels enable evaluation) / a text folder"
    )
    name: str | None = Field(None, description="base name: dataset '<name>-synth', model '<name>-reranker'")
    max_documents: MaxDocuments = 1000
    max_minutes: MaxMinutes = Field(
        20,
        description="wall-time budget in minutes for generation and fine-tuning: generation gets "
        f"{1 - FINETUNE_SHARE:.0%} of it and stops starting new document batches there, with the documents "
        "done (on a CPU with neither AMX nor AVX512-BF16 that is about 60% of 1,000); 0: no budget",
    )
    queries_per_document: QueriesPerDocument = 2
    negatives: Negatives = 7
    judge: Judge = False  # off by default here: slower (see docs/finetuning.md)
    question_types: QuestionTypes = "general"
    queries: QueryLog = None
    eval_path: str | None = Field(
        None,
        description="a BEIR folder with real questions + qrels: evaluation and the promotion gate "
        "(default: path, when it holds them)",
    )
    llm_backend: str | None = None
    llm_model: str | None = None
    method: Method = "auto"
    base_model: BaseModelSpec = None
    epochs: Epochs = 2.0
    group_size: GroupSize = 8
    learning_rate: LearningRate = None
    interpolation: Interpolation = DEFAULT_INTERPOLATION
    promote: Promote = None
    evaluate: bool = Field(True, description="evaluate on the source's real questions when it has qrels")
    eval_max_queries: MaxQueries = None
    eval_depth: Depth = 30
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> AdaptParams:
        if bool(self.collection) == bool(self.path):
            raise field_error(AdaptParams, "collection", "give exactly one of collection or path", self.collection)
        try:
            check_name(self.base_name, "name")
        except ValueError as exc:
            raise field_error(AdaptParams, "name", str(exc), self.name) from None
        return self

    def shared(self, target: type[BaseModel]) -> dict[str, Any]:
        """This run's values of the fields ``target`` (the generation or fine-tuning params) also has:
        the same declarations, so they pass on unchanged."""
        return self.model_dump(include=set(target.model_fields) & set(type(self).model_fields))

    def finetune_params(self, dataset: str, output_name: str, promote: bool | None) -> Any:
        """The FinetuneParams of this run's fine-tuning of ``dataset`` (groups no larger than the
        mined negatives allow)."""
        from adaptrank.training.finetune.params import FinetuneParams

        return FinetuneParams(
            **{
                **self.shared(FinetuneParams),
                "dataset": dataset,
                "output_name": output_name,
                "group_size": min(self.group_size, self.negatives + 1),
                "promote": promote,
            }
        )

    @property
    def base_name(self) -> str:
        if self.name:
            return self.name
        raw = self.collection or Path(str(self.path)).name.removesuffix(".jsonl")
        cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw).strip("-.") or "team"
        return cleaned[:48]


class AdaptResult(BaseModel):
    dataset: str
    model: str
    version: str | None
    promoted: bool
    decision: str = Field(description="one line: why the new version was or was not promoted")
    gate: str = Field("dev split", description="what decided: the generated dev split or real questions")
    dev_before: dict[str, float] = Field(default_factory=dict)
    dev_after: dict[str, float] = Field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    budget: str | None = Field(None, description="where the time budget stopped generation, if it did")
    report: str | None = Field(None, description="the HTML report written, when one was asked for")
    report_error: str | None = Field(
        None, description="why the asked-for report could not be written (the run itself succeeded)"
    )


def _has_qrels(path: Path) -> bool:
    return (
        path.is_dir()
        and (path / "queries.jsonl").is_file()
        and ((path / "qrels.tsv").is_file() or (path / "qrels" / "test.tsv").is_file())
    )


def adapt(
    params: AdaptParams | dict[str, Any],
    settings: Settings | None = None,
    *,
    progress: StepProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    restrict_paths: bool = True,
    llm: Any = None,
    docstore: Any = None,
    report: str | Path | None = None,
) -> AdaptResult:
    from adaptrank.training.evaluate import evaluate_beir
    from adaptrank.training.finetune import finetune
    from adaptrank.training.generate import GenerateParams, generate_dataset

    p = params if isinstance(params, AdaptParams) else AdaptParams.model_validate(params)
    settings = settings or get_settings()
    seconds: dict[str, float] = {}

    def stage(i: int) -> StepProgress:
        def report(done: float, total: float | None, msg: str | None) -> None:
            if progress is not None:
                frac = (done / total) if total else 0.0
                progress(i + min(frac, 1.0), len(STAGES), f"{STAGES[i]}: {msg or ''}")

        return report

    # 1. generate
    t0 = time.perf_counter()
    gen = GenerateParams(
        **{
            **p.shared(GenerateParams),
            "source": "chroma" if p.collection else ("beir" if _is_beir(p.path) else "folder"),
            "output_name": f"{p.base_name}-synth",
            "max_minutes": round(p.max_minutes * (1 - FINETUNE_SHARE), 2),
        }
    )
    ds = generate_dataset(
        gen,
        settings,
        llm=llm,
        progress=stage(0),
        cancelled=cancelled,
        checkpoint_dir=checkpoint_dir,
        docstore=docstore,
        restrict_paths=restrict_paths,
    )
    seconds["generate"] = time.perf_counter() - t0
    budget_note = _budget_note(ds.card, gen.max_minutes, p.max_minutes)

    # 2. fine-tune (+ promotion on the dev split, unless real questions will decide)
    t0 = time.perf_counter()
    store = ModelStore(settings.models_dir)
    model = f"{p.base_name}-reranker"
    previous = store.active_version(model)
    baseline = promotion.baseline_spec(store, model)
    real = p.eval_path or (p.path if p.path and _has_qrels(Path(p.path)) else None)
    real_gate = bool(real and p.evaluate and p.promote is None)
    ft = finetune(
        p.finetune_params(f"{ds.name}@{ds.version}", model, False if real_gate else p.promote),
        settings,
        progress=stage(1),
        cancelled=cancelled,
        store=store,
    )
    seconds["finetune"] = time.perf_counter() - t0
    promoted, decision, gate = ft.promoted, ft.decision, "dev split"

    # 3. evaluate on real questions, when there are some; they make the promotion decision
    evaluation, ev_report = None, None
    if real and p.evaluate:
        t0 = time.perf_counter()
        new = f"{model}@{ft.version}"
        models = list(dict.fromkeys(["zero-shot", *([f"{model}@{previous}"] if previous else []), new]))
        report_ = evaluate_beir(
            real,
            models,
            depth=p.eval_depth,
            max_queries=p.eval_max_queries,
            seed=p.seed,
            settings=settings,
            progress=stage(2),
            roots=allowed_roots(settings) if restrict_paths else None,
        )
        ev_report = report_
        evaluation = report_.model_dump(mode="json")
        seconds["evaluate"] = time.perf_counter() - t0
        if real_gate:
            old_row, new_row = report_.get(baseline), report_.get(new)
            qids = sorted(new_row.per_query)
            d = promotion.decide(
                "mrr@10",
                {"dev_mrr@10": new_row.metrics["mrr@10"]},
                {"dev_mrr@10": old_row.metrics["mrr@10"]},
                baseline=baseline,
                paired=([new_row.per_query[q] for q in qids], [old_row.per_query[q] for q in qids]),
                data="real questions",
            )
            promotion.apply(store, model, ft.version, d)
            promoted, decision, gate = d.promote, d.reason, "real questions"
    result = AdaptResult(
        dataset=f"{ds.name}@{ds.version}",
        model=model,
        version=ft.version,
        promoted=promoted,
        decision=decision,
        gate=gate,
        dev_before=ft.metrics_before,
        dev_after=ft.metrics_after,
        evaluation=evaluation,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        budget=budget_note,
    )
    if report is not None:  # the model is saved (and maybe promoted) by now: a report failure must not fail the run
        try:
            result.report = str(_write_report(report, result, ev_report, baseline, ft.baseline, settings))
        except Exception as exc:  # noqa: BLE001
            result.report_error = f"{type(exc).__name__}: {exc}"
    if progress is not None:
        progress(len(STAGES), len(STAGES), f"done: {model}@{ft.version} ({decision})")
    return result


def _write_report(
    path: str | Path, result: AdaptResult, ev_report: Any, baseline: str, dev_baseline: str, settings: Settings
) -> Path:
    """The HTML report of a run (training/report.py): real-question metrics and the per-query
    comparison of the new version with what it had to beat (when the source has qrels), the dev
    split before/after, the training curve from the new version's card."""
    from adaptrank.training.report import card_history, eval_report_data, render_report, write_report

    new = f"{result.model}@{result.version}"
    dev = {f"before: {dev_baseline}": result.dev_before, f"after: {new}": result.dev_after}
    page: dict[str, Any] = {
        "metrics": dev,
        "per_query": None,
        "examples": None,
        "baseline": dev_baseline,
        "compared": new,
    }
    extra: list[tuple[str, Any]] = []
    if ev_report is not None:
        page = eval_report_data(ev_report, baseline=baseline, compared=new)
        page["subtitle"] = f"real questions: {page['subtitle']}"
        extra = [("generated dev split (synthetic queries)", dev)]
    history, best_step, dev_metric = card_history(new, settings)
    notes = [
        f"decision (on the {result.gate}): {result.decision}",
        f"dataset {result.dataset}; seconds: " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items()),
    ]
    if ev_report is None:
        notes.append("no real questions with qrels (give --eval-path): the table is the generated dev split")
    return write_report(
        path,
        render_report(
            f"adaptrank adapt: {new}",
            page.pop("metrics"),
            page.pop("per_query"),
            history,
            page.pop("examples"),
            extra_tables=extra,
            best_step=best_step,
            dev_metric=dev_metric,
            notes=notes,
            **page,
        ),
    )


def _is_beir(path: str | None) -> bool:
    if not path:
        return False
    p = Path(path)
    return (p.is_file() and p.name.endswith(".jsonl")) or (p / "corpus.jsonl").is_file()


def _budget_note(card: Any, generate_minutes: float, max_minutes: float) -> str | None:
    """One line saying where the time budget stopped generation (None: it did not)."""
    stopped = (card.extra.get("time_budget") or {}).get("stopped_after_documents")
    if stopped is None:
        return None
    return (
        f"generation stopped at its {generate_minutes:g}-minute share of the {max_minutes:g}-minute budget "
        f"after {stopped} of {card.counts.get('documents_sampled')} documents (max_minutes; 0: no budget)"
    )
