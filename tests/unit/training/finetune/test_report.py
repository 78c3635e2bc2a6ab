"""The HTML report: built from plain data, from a real evaluation, written by
``adaptrank eval --report``, and rendered by a real browser (headless Chromium) without errors."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest

from adaptrank.training.report import eval_report_data, pick_changed, render_report, write_report

pytestmark = pytest.mark.timeout(300)

EVIL = "<script>alert('x')</script> & \"quotes\""


def _synthetic_page() -> str:
    per_query = {f"q{i}": (0.5, 0.5 + (i - 12) / 30) for i in range(25)}  # 12 hurt, 1 unchanged, 12 helped
    history = [{"step": s, "loss": 2.0 / (1 + s / 5)} for s in range(1, 41)]
    history += [{"step": s, "dev": 0.5 + s / 200} for s in (0, 10, 20, 30, 40)]
    passages = [{"id": "d1", "text": "x" * 300, "relevance": 1}, {"id": "d2", "text": EVIL, "relevance": 0}]
    helped, hurt = pick_changed(per_query, 10)
    examples = {
        "helped": [
            {
                "query_id": q,
                "query": f"question {q} {EVIL}",
                "before": per_query[q][0],
                "after": per_query[q][1],
                "top_before": passages[::-1],
                "top_after": passages,
            }
            for q in helped
        ],
        "hurt": [
            {
                "query_id": q,
                "query": f"question {q}",
                "before": per_query[q][0],
                "after": per_query[q][1],
                "top_before": passages,
                "top_after": passages[::-1],
            }
            for q in hurt
        ],
    }
    metrics = {
        "bm25": {"ndcg@10": 0.5, "mrr@10": 0.45, "queries": 20},
        EVIL: {"ndcg@10": 0.6, "mrr@10": 0.55, "queries": 20},
    }
    return render_report(
        "report " + EVIL,
        metrics,
        per_query,
        history,
        examples,
        baseline="bm25",
        compared="team@v1",
        best_step=30,
        dev_metric="dev mrr@10",
        extra_tables=[("dev split", {"before": {"dev_mrr@10": 0.5}})],
    )


def test_page_from_plain_data_is_self_contained_and_escaped():
    page = _synthetic_page()
    assert "<script" not in page and "&lt;script&gt;" in page  # every text escaped; no JS at all
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)  # nothing loaded from anywhere
    assert page.count("<table") == 2 and page.count("<svg") == 2  # metrics + dev table; scatter + curve
    assert page.count("class='ex'") == 20  # the 10 helped and the 10 hurt most
    assert "12 better</span>, <span class='down'>12 worse</span>, 1 unchanged" in page
    assert "x" * 200 + "…" in page and "x" * 201 not in page  # passages cut at ~200 characters
    assert "✔ rel 1" in page and "step 30" in page


def test_pick_changed_orders_gains_and_losses():
    per_query = {"a": (0.0, 1.0), "b": (0.5, 0.6), "c": (1.0, 0.0), "d": (0.3, 0.3), "e": (0.9, 0.8)}
    assert pick_changed(per_query, 10) == (["a", "b"], ["c", "e"])
    assert pick_changed(per_query, 1) == (["a"], ["c"])


def test_page_without_comparison_or_history_says_why():
    page = render_report("t", {"m": {"ndcg@10": 0.1}})
    assert "no per-query comparison" in page and "no training history" in page and "<svg" not in page


class _WordOverlap:
    """A scorer that ranks by shared words (a stand-in for a model)."""

    version = "v-test"

    def __init__(self, reverse: bool = False) -> None:
        self.reverse = reverse

    def score_pairs(self, pairs):
        import numpy as np

        s = np.array([len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs], dtype=float)
        return -s if self.reverse else s


class _FakeReranker:
    def scorer(self, spec):
        return _WordOverlap(reverse=spec == "bad")


def _toy_beir(folder):
    folder.mkdir(parents=True)
    docs = {f"d{i}": f"topic{i} notes about topic{i} and <b>tag{i}</b>" for i in range(12)}
    qs = {f"q{i}": (f"tell me about topic{i}", f"d{i}") for i in range(12)}
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v[0]}) + "\n" for k, v in qs.items()))
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{k}\t{v[1]}\t1\n" for k, v in qs.items())
    )
    return folder


def test_eval_report_data_from_an_evaluation(tmp_path, settings):
    from adaptrank.training.evaluate import evaluate_beir

    report = evaluate_beir(
        _toy_beir(tmp_path / "beir"), ["good", "bad"], depth=5, settings=settings, reranker=_FakeReranker()
    )
    assert "ranked" not in report.model_dump() and report.beir is not None  # kept for reports, never serialised
    data = eval_report_data(report)
    assert (data["baseline"], data["compared"]) == ("good@v-test", "bad@v-test")
    assert set(data["metrics"]) == {"bm25", "good@v-test", "bad@v-test"} and len(data["per_query"]) == 12
    assert all(b == 1.0 and a < 1.0 for b, a in data["per_query"].values())  # reversing the order hurts every query
    hurt = data["examples"]["hurt"]
    assert len(hurt) == 10 and not data["examples"]["helped"]
    ex = hurt[0]
    assert ex["query"].startswith("tell me about") and len(ex["top_before"]) == 3
    assert ex["top_before"][0]["relevance"] == 1 and "<b>tag" in ex["top_before"][0]["text"]
    page = render_report("eval", data.pop("metrics"), data.pop("per_query"), [], data.pop("examples"), **data)
    assert "&lt;b&gt;tag" in page and "<b>tag" not in page


def test_cli_eval_writes_the_report(settings, tiny_zero_shot, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from adaptrank.server.cli import app

    monkeypatch.setenv("ADAPTRANK_HOME", str(settings.home))
    out = tmp_path / "out" / "report.html"
    res = CliRunner().invoke(
        app, ["eval", str(_toy_beir(tmp_path / "beir")), "--depth", "5", "--report", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][1]["model"] == "zero-shot"  # stdout stays JSON
    page = out.read_text()
    assert "adaptrank eval: zero-shot" in page and "Per query: bm25 vs zero-shot" in page
    assert page.count("<svg") == 1 and "no training history" in page  # the zero-shot default never trained


# -- a real browser ---------------------------------------------------------------------------------
def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _browse(browser: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (scripts/install.sh --dev installs it with apt-get when run as root)")
    page = write_report(tmp_path / "report.html", _synthetic_page())
    url = page.resolve().as_uri()
    png = tmp_path / "out.png"
    shot = _browse(browser, tmp_path, f"--screenshot={png}", "--window-size=1200,2000", url)
    assert png.is_file(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", raw[16:24]) == (1200, 2000)
    assert len(raw) > 20_000, f"a near-blank screenshot ({len(raw)} bytes)"
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = _browse(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") == 2 and dom.stdout.count("<svg") == 2 and "<script" not in dom.stdout
    assert "<td>bm25</td>" in dom.stdout


def test_adapt_job_takes_the_cli_report_path(monkeypatch, settings, tmp_path):
    """``adaptrank adapt --report`` reaches adapt() through the job's private ``_report``; for a
    restricted (MCP) caller the path must lie inside the allowed roots."""
    import types

    from adaptrank.core.errors import InputError
    from adaptrank.core.settings import Settings
    from adaptrank.server.jobs.kinds import adapt_job
    from adaptrank.training import adapt as adapt_mod

    seen = {}

    def fake_adapt(params, settings, **kw):
        seen.update(kw)
        return adapt_mod.AdaptResult(dataset="d@1", model="m", version="v", promoted=False, decision="-")

    monkeypatch.setattr(adapt_mod, "adapt", fake_adapt)
    s = Settings(home=settings.home, allowed_roots=[tmp_path / "ok"])
    handle = types.SimpleNamespace(
        manager=types.SimpleNamespace(settings=s),
        progress=None,
        cancelled=False,
        checkpoint_dir=None,
        params={"path": str(tmp_path), "_restrict_paths": False, "_report": str(tmp_path / "r.html")},
    )
    adapt_job(handle)
    assert seen["report"] == str(tmp_path / "r.html") and seen["restrict_paths"] is False
    handle.params = {"path": str(tmp_path), "_report": str(tmp_path / "elsewhere" / "r.html")}
    with pytest.raises(InputError, match="report"):
        adapt_job(handle)
    handle.params = {"path": str(tmp_path), "_report": str(tmp_path / "ok" / "r.html")}
    adapt_job(handle)
    assert seen["report"] == (tmp_path / "ok" / "r.html").resolve()
