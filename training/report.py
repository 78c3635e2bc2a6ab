# Over 400 lines: one self-contained HTML page (template, CSS, inline SVG plots) in one file, like the page it writes.
"""A self-contained HTML report for ``adaptrank eval --report`` and ``adaptrank adapt --report``.

One page, no external resources and no JavaScript: the metrics table(s), a per-query scatter of the
baseline against the compared (adapted) model, the training curve (loss and dev metric per step,
from the model card's ``extra.history``), and the queries the compared model helped and hurt most
with their top passages. Plots are small inline SVG; every piece of text is escaped.

:func:`render_report` takes plain data (dicts and lists), so anything can build a page;
:func:`eval_report_data` turns an :class:`~adaptrank.training.evaluate.EvalReport` (with its
per-query rankings and BEIR data) into that plain data.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adaptrank.core.metrics import ndcg_at_k

#: The per-query metric of the scatter and of the helped/hurt lists.
PER_QUERY_METRIC = "ndcg@10"
SNIPPET_CHARS = 200

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0}.note{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{font-weight:600}
.ex{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
.ex .q{font-weight:600;overflow-wrap:anywhere}.ex .d{font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#c62828}
.cols{display:flex;gap:16px}.cols>div{flex:1;min-width:0}
ol{margin:4px 0;padding-left:22px}li{margin:3px 0;font-size:.9em;overflow-wrap:anywhere}
.rel{color:#1a7f37;font-weight:600}.irr{color:#999}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return esc(v)
    if float(v).is_integer() and abs(v) >= 1:
        return f"{int(v)}"
    return f"{v:.4f}"


# -- tables -----------------------------------------------------------------------------------------
def metrics_table(rows: Mapping[str, Mapping[str, Any]], caption: str = "") -> str:
    """Rows (name -> metric -> value) as an HTML table; the best value of each metric in bold."""
    keys: list[str] = []
    for m in rows.values():
        keys += [k for k in m if k not in keys]
    best: dict[str, float] = {}
    for k in keys:
        vals = [m[k] for m in rows.values() if isinstance(m.get(k), (int, float))]
        if vals and k not in ("queries", "groups"):
            best[k] = max(vals)
    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    body = []
    for name, m in rows.items():
        cells = []
        for k in keys:
            v = m.get(k)
            strong = k in best and isinstance(v, (int, float)) and v == best[k] and len(rows) > 1
            text = "-" if v is None else _fmt(v)
            cells.append(f'<td class="num">{"<b>" + text + "</b>" if strong else text}</td>')
        body.append(f"<tr><td>{esc(name)}</td>{''.join(cells)}</tr>")
    cap = f"<caption style='text-align:left'>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- plots (inline SVG) -----------------------------------------------------------------------------
def scatter_svg(points: Mapping[str, tuple[float, float]], x_label: str, y_label: str, size: int = 420) -> str:
    """Per-query (before, after) points on [0, 1] x [0, 1] with the diagonal; above it = helped.
    Queries on the same spot share one circle whose area grows with their number."""
    pad_l, pad_b, pad_t, pad_r = 52, 44, 12, 12
    w = h = size
    pw, ph = w - pad_l - pad_r, h - pad_t - pad_b

    def inset(v: float) -> float:  # 0 and 1 sit a little inside the frame, so edge points stay whole
        return 0.04 + 0.92 * max(0.0, min(1.0, v))

    def sx(v: float) -> float:
        return pad_l + inset(v) * pw

    def sy(v: float) -> float:
        return pad_t + (1 - inset(v)) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="per-query scatter">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{pad_t}" x2="{sx(t):.1f}" y2="{pad_t + ph}" stroke="#eee"/>')
        parts.append(f'<line x1="{pad_l}" y1="{sy(t):.1f}" x2="{pad_l + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{sx(t):.1f}" y="{pad_t + ph + 14}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad_l - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#888" stroke-dasharray="4 3"/>')
    spots: dict[
        tuple[float, float], list[str]
    ] = {}  # ties are common (0, 1, 1/2...): one circle per spot, sized by count
    for qid, (b, a) in points.items():
        spots.setdefault((round(b, 3), round(a, 3)), []).append(str(qid))
    for (b, a), qids in spots.items():
        color = "#1a7f37" if a > b + 1e-9 else "#c62828" if a < b - 1e-9 else "#777"
        r = 3.5 + 2.0 * math.sqrt(len(qids) - 1)
        who = ", ".join(qids[:10]) + (f" and {len(qids) - 10} more" if len(qids) > 10 else "")
        count = f"{len(qids)} queries" if len(qids) > 1 else "query"
        parts.append(
            f'<circle cx="{sx(b):.1f}" cy="{sy(a):.1f}" r="{r:.1f}" fill="{color}" fill-opacity="0.45">'
            f"<title>{count} {esc(who)}: {b:.3f} → {a:.3f}</title></circle>"
        )
    parts.append(f'<text x="{pad_l + pw / 2}" y="{h - 6}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {pad_t + ph / 2}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def curve_svg(
    history: Sequence[Mapping[str, Any]],
    dev_label: str = "dev metric",
    best_step: int | None = None,
    width: int = 760,
    height: int = 300,
) -> str:
    """Training loss (left axis) and dev metric (right axis) by step, from card history entries
    ``{"step", "loss"}`` / ``{"step", "dev"}``."""
    loss = sorted((float(e["step"]), float(e["loss"])) for e in history if _num(e.get("loss")) and _num(e.get("step")))
    dev = sorted((float(e["step"]), float(e["dev"])) for e in history if _num(e.get("dev")) and _num(e.get("step")))
    steps = [s for s, _ in loss + dev]
    pad_l, pad_r, pad_t, pad_b = 56, 56, 14, 40
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    x_lo, x_hi = min(steps), max(steps)
    if x_hi == x_lo:
        x_hi = x_lo + 1

    def sx(v: float) -> float:
        return pad_l + (v - x_lo) / (x_hi - x_lo) * pw

    def scale(vals: list[float]) -> tuple[float, float]:
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
        margin = (hi - lo) * 0.05
        return lo - margin, hi + margin

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="training curve">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for t in _ticks(x_lo, x_hi, 8, integer=True):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{pad_t}" x2="{sx(t):.1f}" y2="{pad_t + ph}" stroke="#eee"/>')
        parts.append(f'<text x="{sx(t):.1f}" y="{pad_t + ph + 14}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{pad_l + pw / 2}" y="{height - 6}" text-anchor="middle">step</text>')
    for series, color, side, label in (
        (loss, "#1f5fbf", "left", "training loss"),
        (dev, "#e07b00", "right", dev_label),
    ):
        if not series:
            continue
        lo, hi = scale([v for _, v in series])

        def sy(v: float, lo: float = lo, hi: float = hi) -> float:
            return pad_t + (1 - (v - lo) / (hi - lo)) * ph

        x_axis = pad_l - 6 if side == "left" else pad_l + pw + 6
        anchor = "end" if side == "left" else "start"
        for t in _ticks(lo, hi, 5):
            parts.append(
                f'<text x="{x_axis}" y="{sy(t) + 4:.1f}" text-anchor="{anchor}" style="fill:{color}">{t:.3g}</text>'
            )
        pts = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in series)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for s, v in series:
            parts.append(
                f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{color}"><title>{esc(label)} '
                f"at step {s:g}: {v:.4f}</title></circle>"
            )
        lx = pad_l + 8 if side == "left" else pad_l + pw - 8
        parts.append(
            f'<text x="{lx}" y="{pad_t + 14}" text-anchor="{"start" if side == "left" else "end"}" '
            f'style="fill:{color};font-weight:600">{esc(label)}</text>'
        )
    if best_step is not None and x_lo <= best_step <= x_hi:
        parts.append(
            f'<line x1="{sx(best_step):.1f}" y1="{pad_t}" x2="{sx(best_step):.1f}" y2="{pad_t + ph}" '
            f'stroke="#e07b00" stroke-dasharray="3 3"><title>best dev checkpoint: step {best_step}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- examples ---------------------------------------------------------------------------------------
def _passages(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "<p class='note'>(no passages)</p>"
    lis = []
    for p in items:
        rel = p.get("relevance") or 0
        mark = (
            f"<span class='rel' title='relevance {esc(rel)}'>✔ rel {esc(rel)}</span>"
            if rel > 0
            else "<span class='irr' title='not judged relevant'>✘</span>"
        )
        text = str(p.get("text", ""))
        snippet = text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")
        doc = f" <span class='note'>[{esc(p['id'])}]</span>" if p.get("id") else ""
        lis.append(f"<li>{mark}{doc} {esc(snippet)}</li>")
    return f"<ol>{''.join(lis)}</ol>"


def _example(ex: Mapping[str, Any], baseline: str, compared: str, metric: str) -> str:
    b, a = float(ex["before"]), float(ex["after"])
    cls = "up" if a > b else "down" if a < b else ""
    qid = f" <span class='note'>[{esc(ex['query_id'])}]</span>" if ex.get("query_id") else ""
    return (
        f"<div class='ex'><div><span class='q'>{esc(ex.get('query', ''))}</span>{qid}</div>"
        f"<div class='d'>{esc(metric)}: {b:.3f} → {a:.3f} <span class='{cls}'>({a - b:+.3f})</span></div>"
        f"<div class='cols'><div><b>{esc(baseline)}</b> top {len(ex.get('top_before') or [])}"
        f"{_passages(ex.get('top_before') or [])}</div>"
        f"<div><b>{esc(compared)}</b> top {len(ex.get('top_after') or [])}{_passages(ex.get('top_after') or [])}</div></div></div>"
    )


def pick_changed(per_query: Mapping[str, tuple[float, float]], n: int = 10) -> tuple[list[str], list[str]]:
    """The ``n`` queries with the largest gain (after - before > 0) and the ``n`` with the largest loss."""
    deltas = sorted(((a - b, q) for q, (b, a) in per_query.items()), key=lambda t: (-t[0], t[1]))
    helped = [q for d, q in deltas if d > 1e-12][:n]
    hurt = [q for d, q in sorted(deltas, key=lambda t: (t[0], t[1])) if d < -1e-12][:n]
    return helped, hurt


# -- the page ---------------------------------------------------------------------------------------
def render_report(
    title: str,
    metrics: Mapping[str, Mapping[str, Any]],
    per_query: Mapping[str, tuple[float, float]] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    examples: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    baseline: str = "baseline",
    compared: str = "compared",
    metric: str = PER_QUERY_METRIC,
    subtitle: str = "",
    extra_tables: Sequence[tuple[str, Mapping[str, Mapping[str, Any]]]] = (),
    dev_metric: str = "dev metric",
    best_step: int | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The HTML page, from plain data.

    ``metrics``: row name -> metric -> value (the main table). ``per_query``: query id ->
    (baseline value, compared value) of ``metric``. ``history``: ``{"step", "loss"}`` and
    ``{"step", "dev"}`` entries (a model card's ``extra.history``). ``examples``: ``{"helped": [...],
    "hurt": [...]}``, each ``{"query_id", "query", "before", "after", "top_before", "top_after"}`` with
    passages ``{"id", "text", "relevance"}``. Missing parts get a line that says why.
    """
    body = [f"<h1>{esc(title)}</h1>"]
    if subtitle:
        body.append(f"<p class='sub'>{esc(subtitle)}</p>")
    body.append("<h2>Metrics</h2>")
    body.append(metrics_table(metrics) if metrics else "<p class='note'>no metrics</p>")
    for caption, rows in extra_tables:
        body.append(metrics_table(rows, caption))
    body += [f"<p class='note'>{esc(n)}</p>" for n in notes]

    body.append(f"<h2>Per query: {esc(baseline)} vs {esc(compared)}</h2>")
    if per_query:
        vals = list(per_query.values())
        up = sum(a > b + 1e-9 for b, a in vals)
        down = sum(a < b - 1e-9 for b, a in vals)
        mean_b = sum(b for b, _ in vals) / len(vals)
        mean_a = sum(a for _, a in vals) / len(vals)
        body.append(
            f"<p>{len(vals)} queries, {esc(metric)} per query: <span class='up'>{up} better</span>, "
            f"<span class='down'>{down} worse</span>, {len(vals) - up - down} unchanged; "
            f"mean {mean_b:.4f} → {mean_a:.4f}. Points above the diagonal are queries {esc(compared)} helped; "
            f"a bigger circle holds several queries (hover for their ids).</p>"
        )
        body.append(scatter_svg(per_query, f"{baseline} {metric}", f"{compared} {metric}"))
    else:
        body.append("<p class='note'>no per-query comparison (needs real questions with qrels and two rankings)</p>")

    body.append("<h2>Training curve</h2>")
    if any(_num(e.get("loss")) or _num(e.get("dev")) for e in history):
        body.append(curve_svg(history, dev_metric, best_step))
        n_loss = sum(_num(e.get("loss")) for e in history)
        n_dev = sum(_num(e.get("dev")) for e in history)
        body.append(
            f"<p class='note'>{n_loss} loss logs and {n_dev} dev evaluations from the model card"
            f"{f'; the saved weights are the best dev checkpoint (step {best_step})' if best_step is not None else ''}.</p>"
        )
    else:
        body.append(
            "<p class='note'>no training history (the compared model has no card with a history, "
            "e.g. the zero-shot default)</p>"
        )

    for kind, heading in (("helped", "helped most"), ("hurt", "hurt most")):
        items = (examples or {}).get(kind) or []
        body.append(f"<h2>Queries {esc(compared)} {heading}</h2>")
        if not items:
            body.append(f"<p class='note'>no query was {'helped' if kind == 'helped' else 'hurt'}</p>")
        body += [_example(ex, baseline, compared, metric) for ex in items]

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    body.append(f"<p class='note'>generated by adaptrank on {esc(stamp)}</p>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(path: str | Path, page: str) -> Path:
    """Write the page atomically (a temp file in the same folder, renamed into place)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- from an evaluation -----------------------------------------------------------------------------
def display_name(row: Any) -> str:
    """The row label ``adaptrank eval`` prints: ``model@version`` for store models."""
    model, version = row.model, row.version
    return model + (f"@{version}" if version and model != version and "@" not in model else "")


def eval_report_data(
    report: Any, *, baseline: str | None = None, compared: str | None = None, n_examples: int = 10, top: int = 3
) -> dict[str, Any]:
    """Plain data for :func:`render_report` from an ``EvalReport`` that kept its per-query rankings
    and data (``evaluate_beir`` does): the metrics table, per-query nDCG@10 of ``baseline`` vs
    ``compared`` (model specs of the report; default: the first reranker vs the last, or the first
    stage vs the only reranker), and the queries that changed most with their top passages."""
    rows = report.results
    names = [r.model for r in rows]
    if compared is None:
        compared = names[-1]
    if baseline is None:
        baseline = names[1] if len(names) > 2 else names[0]
    b_row, c_row = report.get(baseline), report.get(compared)
    data = getattr(report, "beir", None)
    out: dict[str, Any] = {
        "metrics": {display_name(r): dict(r.metrics) for r in rows},
        "baseline": display_name(b_row),
        "compared": display_name(c_row),
        "metric": PER_QUERY_METRIC,
        "subtitle": f"{report.data}: {report.queries} queries, {report.documents} documents, "
        f"first stage {report.first_stage} top-{report.depth}, reranked",
        "per_query": None,
        "examples": {},
    }
    if data is None or not b_row.ranked or not c_row.ranked or b_row is c_row:
        return out
    qids = [q for q in c_row.ranked if q in b_row.ranked and q in data.qrels]
    per_query = {
        q: (ndcg_at_k(b_row.ranked[q], data.qrels[q], 10), ndcg_at_k(c_row.ranked[q], data.qrels[q], 10)) for q in qids
    }
    out["per_query"] = per_query
    helped, hurt = pick_changed(per_query, n_examples)

    def passages(ranked: Sequence[str], qrels: Mapping[str, int]) -> list[dict[str, Any]]:
        return [
            {"id": d, "text": data.doc_text(d) if d in data.corpus else "", "relevance": qrels.get(d, 0)}
            for d in ranked[:top]
        ]

    def example(q: str) -> dict[str, Any]:
        b, a = per_query[q]
        return {
            "query_id": q,
            "query": data.queries.get(q, ""),
            "before": b,
            "after": a,
            "top_before": passages(b_row.ranked[q], data.qrels[q]),
            "top_after": passages(c_row.ranked[q], data.qrels[q]),
        }

    out["examples"] = {"helped": [example(q) for q in helped], "hurt": [example(q) for q in hurt]}
    return out


def card_history(spec: str, settings: Any) -> tuple[list[dict[str, Any]], int | None, str]:
    """A model-store model's training history, best step and dev metric name from its card
    (empty for the zero-shot default, paths and models without a history)."""
    try:
        from adaptrank.core.engine.models import describe
        from adaptrank.core.modelstore import ModelStore

        card = describe(spec, ModelStore(settings.models_dir)).card or {}
    except Exception:  # noqa: BLE001 - a report never fails on a missing card
        return [], None, "dev metric"
    hyper = card.get("hyperparameters") or {}
    history = list((card.get("extra") or {}).get("history") or [])
    best = hyper.get("best_step")
    metric = str(hyper.get("metric") or "mrr@10")
    return history, best if isinstance(best, int) else None, f"dev {metric}"
