"""``adaptrank generate`` / ``jobs`` / ``datasets`` through typer's runner, with a scripted LLM."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from adaptrank.server.cli import app


@pytest.fixture
def home(tmp_path, monkeypatch, gen):
    monkeypatch.setenv("ADAPTRANK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("adaptrank.core.llm.factory.get_llm", lambda *a, **k: gen.scripted())
    return tmp_path / "home"


def test_generate_jobs_and_datasets(home, corpus_dir):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "generate",
            "--source",
            "folder",
            "--path",
            str(corpus_dir),
            "--output",
            "toy",
            "-k",
            "1",
            "--negatives",
            "2",
            "--question-types",
            "medical",
            "--dense",
            "off",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["dataset"] == "toy" and result["counts"]["groups"] == 24
    res = runner.invoke(app, ["datasets", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["card"]["counts"]["groups"] == 24
    res = runner.invoke(app, ["jobs", "list", "--json"])
    jobs = json.loads(res.stdout)
    assert [j["state"] for j in jobs] == ["succeeded"] and jobs[0]["params"]["_restrict_paths"] is False
    res = runner.invoke(app, ["jobs", "status", jobs[0]["id"], "--json"])
    assert json.loads(res.stdout)["result"]["dataset"] == "toy"
    assert runner.invoke(app, ["jobs"]).exit_code == 0


def test_cli_errors_are_one_line(home, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--source", "folder", "--path", str(tmp_path / "missing"), "--output", "x"])
    assert res.exit_code == 2 and "does not exist" in " ".join(res.output.split())
    (tmp_path / "empty").mkdir()  # fails inside the job: exit 1, and how to resume
    res = runner.invoke(app, ["generate", "--source", "folder", "--path", str(tmp_path / "empty"), "--output", "x"])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "failed: path:" in text and "holds no .txt/.md files" in text and "--resume" in text
    res = runner.invoke(app, ["generate", "--source", "folder", "--output", "x"])
    assert res.exit_code == 2 and "path: is required" in res.output
    res = runner.invoke(app, ["jobs", "status", "nope"])
    assert res.exit_code == 2 and "no job 'nope'" in res.output
    res = runner.invoke(app, ["generate", "--resume", "nope"])
    assert res.exit_code == 2
