"""The ``adaptrank`` CLI (typer) with a tiny cross-encoder: help, rerank (args, file, JSON), models, serve guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adaptrank.server.cli import app

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("ADAPTRANK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAPTRANK_TOKEN", raising=False)
    monkeypatch.delenv("ADAPTRANK_DEFAULT_MODEL", raising=False)
    return CliRunner()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["serve", "rerank", "models"]),
        (["serve"], ["--transport", "--host", "--port", "--model", "--token"]),
        (["rerank"], ["QUERY", "--file", "--top-n", "--model", "--json"]),
        (["models"], ["--json"]),
    ],
)
def test_help(runner, args, expected):
    result = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for word in expected:
        assert word in result.stdout


def _expected_order(model: str, query: str, texts: list[str]) -> list[int]:
    from adaptrank.core.engine.crossencoder import CrossEncoderScorer

    scores = CrossEncoderScorer(model).score_pairs([(query, t) for t in texts])
    return list(np.argsort(-scores, kind="stable"))


def test_rerank_arguments_json(runner, tiny_cross_encoder):
    docs = ["gout and uric acid", "paris", "joint pain in the toe", "green tea"]
    result = runner.invoke(
        app,
        [
            "rerank",
            "what causes gout",
            *docs,
            "--model",
            f"cross-encoder:{tiny_cross_encoder}",
            "--top-n",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)  # stdout holds only the JSON (loading messages go to stderr)
    assert [r["index"] for r in body["results"]] == _expected_order(tiny_cross_encoder, "what causes gout", docs)[:3]
    assert body["results"][0]["document"]["text"] == docs[body["results"][0]["index"]]


def test_rerank_file_and_table(runner, tiny_cross_encoder, tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"documents": [{"id": "doc-a", "text": "alpha"}, {"id": "doc-b", "text": "beta"}]}))
    result = runner.invoke(
        app,
        ["rerank", "alpha?", "gamma", "--file", str(path), "-m", f"cross-encoder:{tiny_cross_encoder}"],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "doc-a" in result.stdout and "doc-b" in result.stdout and "gamma" in result.stdout
    assert "score" in result.stdout and "index" in result.stdout


def test_rerank_bad_input_exits_2_with_field_and_limit(runner, tiny_cross_encoder):
    result = runner.invoke(app, ["rerank", "q", "a", "b", "-n", "0", "-m", f"cross-encoder:{tiny_cross_encoder}"])
    assert result.exit_code == 2
    assert "top_n" in result.stderr and "between 1 and 1000" in result.stderr
    result = runner.invoke(app, ["rerank", "q", "a", "-m", "no-such-model"])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.stderr


def test_rerank_bad_file(runner, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = runner.invoke(app, ["rerank", "q", "--file", str(bad)])
    assert result.exit_code == 2 and "--file" in result.stderr and "not valid JSON" in result.stderr


def test_models_lists_zero_shot_and_store(runner, tmp_path, tiny_cross_encoder):
    import shutil

    from adaptrank.core.modelstore import ModelStore

    store = ModelStore(tmp_path / "home" / "models")
    with store.writing("med", {"backend": "cross-encoder"}, version="v1") as d:
        shutil.copytree(tiny_cross_encoder, d, dirs_exist_ok=True)
    store.activate("med", "v1")
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert [(m["name"], m["version"], m["active"]) for m in json.loads(result.stdout)] == [
        ("zero-shot", "all-minilm-l6-v2", True),
        ("med", "v1", True),
    ]
    table = runner.invoke(app, ["models"], terminal_width=200)
    assert table.exit_code == 0 and "med" in table.stdout and "zero-shot" in table.stdout


def test_serve_refuses_public_host_without_token(runner):
    result = runner.invoke(app, ["serve", "--transport", "http", "--host", "0.0.0.0", "--no-preload"])
    assert result.exit_code == 2
    assert "refusing to listen on '0.0.0.0'" in result.stderr and "ADAPTRANK_TOKEN" in result.stderr


def test_serve_rejects_unknown_model_before_serving(runner):
    result = runner.invoke(app, ["serve", "--transport", "http", "--model", "no-such-model"])
    assert result.exit_code == 2 and "unknown model" in result.stderr


def test_rerank_reads_documents_from_stdin(runner, tiny_cross_encoder):
    docs = ["alpha", {"id": "b", "text": "beta"}]
    result = runner.invoke(
        app,
        ["rerank", "alpha", "--file", "-", "--json", "-m", f"cross-encoder:{tiny_cross_encoder}"],
        input=json.dumps(docs),
    )
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["results"]
    assert sorted(r["index"] for r in results) == [0, 1]
    assert next(r for r in results if r["index"] == 1)["id"] == "b"
