"""Models that travel (issue 12, part 3): an exported model loads in plain sentence-transformers
(in a process where adaptrank cannot be imported) and gives adaptrank's scores; an import brings it
back with the same scores; a bad folder is refused with the field named.

Real models: the query-encoder residual is trained on the offline MiniLM (the real zero-shot
default) from real medquad-dev questions and passages; the cross-encoder is MiniLM with a new
one-logit head, fine-tuned on the same groups.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

MEDQUAD = Path("/work/shared/data/medquad-dev")
N_GROUPS = 48


def _medquad_groups(n: int = N_GROUPS, negatives: int = 7, seed: int = 0):
    """Real questions with their judged passage and 7 hard negatives: the passages next to it in the
    corpus (the other sections of the same condition and its neighbours)."""
    from adaptrank.training.dataset import Group

    if not (MEDQUAD / "corpus.jsonl").is_file():
        pytest.skip("medquad-dev is not on this machine")
    docs = {}
    with open(MEDQUAD / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            docs[d["_id"]] = (d.get("title", "") + ". " + d["text"]).strip(". ")[:600]
            if len(docs) >= 200:
                break
    queries = {}
    with open(MEDQUAD / "queries.jsonl") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    qrels = [line.split("\t") for line in (MEDQUAD / "qrels.tsv").read_text().splitlines()[1:]]
    rng = random.Random(seed)
    ids = list(docs)
    groups = []
    for qid, did, _ in qrels:
        if did in docs and qid in queries:
            at = ids.index(did)
            near = [i for i in ids[max(0, at - negatives) : at + negatives + 1] if i != did]
            negs = sorted(near, key=lambda i: abs(ids.index(i) - at))[:negatives]
            rng.shuffle(negs)
            groups.append(Group(query=queries[qid], positive=docs[did], negatives=[docs[i] for i in negs], doc_id=did))
        if len(groups) >= n:
            break
    return groups


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm):
    """One store with a trained query-encoder residual (``med-q``) and a cross-encoder (``med-ce``)."""
    from adaptrank.core.settings import Settings
    from adaptrank.training.dataset import DatasetStore
    from adaptrank.training.finetune import finetune

    home = tmp_path_factory.mktemp("export") / "home"
    settings = Settings(home=home, microbatch_wait_ms=5.0)
    groups = _medquad_groups()
    DatasetStore(settings).write("med", groups, {"source": {"kind": "medquad-dev"}}, dev_fraction=0.25, seed=0)
    common = dict(dataset="med", epochs=2, batch_size=8, promote=True)
    q = finetune({**common, "output_name": "med-q", "method": "query-encoder", "learning_rate": 2e-4}, settings)
    assert q.best_step, f"the query tower must have moved from the prior: {q}"
    ce = finetune(
        {
            **common,
            "output_name": "med-ce",
            "method": "cross-encoder",
            "base_model": minilm,
            "epochs": 1,
            "max_length": 128,
        },
        settings,
    )
    passages = list(dict.fromkeys(t for g in groups for t in [g.positive, *g.negatives]))
    return settings, q, ce, groups, passages


def _store(settings):
    from adaptrank.core.modelstore import ModelStore

    return ModelStore(settings.models_dir)


def _scorer(settings, spec):
    from adaptrank.core.engine import Reranker

    return Reranker(settings=settings).scorer(spec)


PLAIN_ST = r"""
import json, sys
class NoAdaptrank:  # adaptrank must not be importable here
    def find_spec(self, name, path=None, target=None):
        if name == "adaptrank" or name.startswith("adaptrank."):
            raise ImportError("adaptrank is blocked in this process: " + name)
sys.meta_path.insert(0, NoAdaptrank())
args = json.load(open(sys.argv[1]))
import numpy as np
if args["kind"] == "cross-encoder":
    from sentence_transformers import CrossEncoder
    model = CrossEncoder(args["dir"], device="cpu")
    out = {"scores": model.predict([tuple(p) for p in args["pairs"]], batch_size=8).tolist()}
else:
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(args["dir"], device="cpu")
    q = model.encode_query(args["queries"], convert_to_numpy=True)
    d = model.encode_document(args["passages"], convert_to_numpy=True)
    out = {"q": q.tolist(), "d": d.tolist(), "cos": model.similarity(q, d).numpy().tolist()}
out["adaptrank_loaded"] = sorted(m for m in sys.modules if m == "adaptrank" or m.startswith("adaptrank."))
json.dump(out, open(sys.argv[2], "w"))
"""


def _plain_st(tmp_path, **args):
    """Run sentence-transformers alone in a fresh isolated interpreter (-I: no PYTHONPATH, no cwd)."""
    script, inp, outp = tmp_path / "plain.py", tmp_path / "in.json", tmp_path / "out.json"
    script.write_text(PLAIN_ST)
    inp.write_text(json.dumps(args))
    subprocess.run([sys.executable, "-I", str(script), str(inp), str(outp)], check=True, cwd=tmp_path, timeout=600)
    out = json.loads(outp.read_text())
    assert out["adaptrank_loaded"] == []
    return out


def test_residual_export_loads_in_plain_sentence_transformers_with_adaptrank_scores(trained, tmp_path):
    from adaptrank.core.export import export_model

    settings, q, _, groups, passages = trained
    store = _store(settings)
    scorer = _scorer(settings, "med-q")
    assert scorer.backend == "residual" and scorer.query_encoder is not None
    queries = [g.query for g in groups[:8]]
    # the trained query tower really differs from the prior, so a wrong route would show
    assert not np.allclose(
        scorer.embed_queries(queries), scorer.prior.encode(queries, normalize_embeddings=True), atol=1e-3
    )

    info = export_model(store, f"med-q@{q.version}", tmp_path / "export", max_length=settings.max_length)
    assert info["kind"] == "sentence-transformer-router"
    assert "adaptrank" not in (tmp_path / "export" / "modules.json").read_text()
    got = _plain_st(tmp_path, kind="st", dir=str(tmp_path / "export"), queries=queries, passages=passages)

    np.testing.assert_allclose(np.array(got["q"]), scorer.embed_queries(queries), atol=1e-5)
    np.testing.assert_allclose(np.array(got["d"]), scorer.embed_passages(passages), atol=1e-5)
    ours = np.array([scorer.score_pairs([(qq, p) for p in passages]) for qq in queries])
    cos = np.array(got["cos"])
    np.testing.assert_allclose(cos / scorer.tau, ours, atol=1e-3)  # scores are cosine / tau (tau 0.05)
    assert (np.argsort(-cos, axis=1)[:, :10] == np.argsort(-ours, axis=1)[:, :10]).all()

    readme = (tmp_path / "export" / "README.md").read_text()
    card = store.get("med-q", q.version).card
    assert card.metrics_after and card.metrics_before
    for key, value in card.metrics_after.items():
        assert key in readme and f"{value:.4g}" in readme
    for value in card.metrics_before.values():
        assert f"{value:.4g}" in readme
    assert card.dataset in readme and "query-encoder" in readme and "tau" in readme


def test_cross_encoder_export_predicts_adaptrank_scores_without_adaptrank(trained, tmp_path):
    from adaptrank.core.export import export_model

    settings, _, ce, groups, _passages = trained
    store = _store(settings)
    scorer = _scorer(settings, "med-ce")
    assert scorer.backend == "cross-encoder"
    pairs = [(g.query, p) for g in groups[:4] for p in [g.positive, *g.negatives]]
    ours = scorer.score_pairs(pairs)
    assert np.ptp(ours) > 1e-3  # scores that differ, so equality means something

    export_model(store, "med-ce", tmp_path / "ce", max_length=settings.max_length)
    got = _plain_st(tmp_path, kind="cross-encoder", dir=str(tmp_path / "ce"), pairs=pairs)
    np.testing.assert_allclose(np.array(got["scores"]), ours, atol=1e-5)
    readme = (tmp_path / "ce" / "README.md").read_text()
    for key, value in store.get("med-ce", ce.version).card.metrics_after.items():
        assert key in readme and f"{value:.4g}" in readme


@pytest.mark.parametrize("name", ["med-q", "med-ce"])
def test_import_round_trip_gives_identical_scores(trained, tmp_path, name):
    from adaptrank.core.export import export_model, import_model

    settings, _, _, groups, _passages = trained
    store = _store(settings)
    export_model(store, name, tmp_path / "out", max_length=settings.max_length)
    info = import_model(store, tmp_path / "out", f"{name}-back", settings=settings)
    assert info["active"]  # a new name: its first version becomes active
    ref = store.get(f"{name}-back")
    src = store.get(name).card
    assert ref.card.backend == src.backend
    assert ref.card.metrics_after == src.metrics_after and ref.card.dataset == src.dataset
    assert ref.card.extra["origin"]["exported_from"] == f"{name}@{src.version}"
    if name == "med-q":  # the frozen passage side is recognised as the zero-shot default again
        assert ref.card.extra["residual"]["prior"] == "zero-shot"
    pairs = [(g.query, p) for g in groups[:3] for p in [g.positive, *g.negatives]]
    np.testing.assert_allclose(
        _scorer(settings, f"{name}-back").score_pairs(pairs),
        _scorer(settings, name).score_pairs(pairs),
        rtol=1e-6,
        atol=1e-6,
    )


def test_plain_bi_encoder_and_bad_folders(settings, tmp_path, tiny_bi_encoder, tiny_cross_encoder):
    import shutil

    from adaptrank.core.errors import InputError, NotFoundError
    from adaptrank.core.export import export_model, import_model

    store = _store(settings)
    info = import_model(store, tiny_bi_encoder, "tiny-bi", settings=settings)
    assert info["backend"] == "bi-encoder" and info["kind"] == "sentence-transformer"
    info = import_model(store, tiny_cross_encoder, "tiny-ce", settings=settings)
    assert info["backend"] == "cross-encoder"

    with pytest.raises(InputError, match="^src: .* is not a folder"):
        import_model(store, tmp_path / "nope", "x", settings=settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither modules.json"):
        import_model(store, tmp_path / "empty", "x", settings=settings)
    bad = tmp_path / "two-labels"
    shutil.copytree(tiny_cross_encoder, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b"}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"^config.json: num_labels: is 2"):
        import_model(store, bad, "x", settings=settings)
    cfg["architectures"] = ["BertModel"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"^config.json: architectures"):
        import_model(store, bad, "x", settings=settings)
    dot = tmp_path / "dot"
    shutil.copytree(tiny_bi_encoder, dot)
    cfg = json.loads((dot / "config_sentence_transformers.json").read_text())
    cfg["similarity_fn_name"] = "dot"
    (dot / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="similarity_fn_name: is 'dot'"):
        import_model(store, dot, "x", settings=settings)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bi_encoder, broken)
    (broken / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "no.such.Module"}]')
    with pytest.raises(InputError, match="^src: .* does not load as a sentence-transformers model"):
        import_model(store, broken, "x", settings=settings)
    with pytest.raises(InputError, match="^name: "):
        import_model(store, tiny_bi_encoder, "../evil", settings=settings)
    assert "x" not in store.names()  # nothing landed for the refused folders

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(InputError, match="^out_dir: .* not an empty folder"):
        export_model(store, "tiny-bi", tmp_path / "full")
    with pytest.raises(NotFoundError):
        export_model(store, "tiny-bi@v0-nope", tmp_path / "o")
    out = export_model(store, "tiny-bi", tmp_path / "bi-out")
    assert out["kind"] == "sentence-transformer" and (tmp_path / "bi-out" / "modules.json").is_file()


def test_residual_with_a_cross_encoder_term_is_refused_by_name(settings, tmp_path, tiny_cross_encoder):
    import shutil

    from adaptrank.core.errors import InputError
    from adaptrank.core.export import export_model

    store = _store(settings)
    extra = {"residual": {"prior": "zero-shot", "tau": 0.05, "query_encoder": None, "cross_encoder": "cross_encoder"}}
    with store.writing("res-ce", {"backend": "residual", "extra": extra}, version="v1") as d:
        shutil.copytree(tiny_cross_encoder, d / "cross_encoder")
    with pytest.raises(InputError, match="^model: res-ce@v1 is a residual cross-encoder"):
        export_model(store, "res-ce@v1", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_models_export_and_import(trained, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from adaptrank.server.cli import app

    settings, *_ = trained
    monkeypatch.setenv("ADAPTRANK_HOME", str(settings.home))
    runner = CliRunner()
    done = runner.invoke(app, ["models", "export", "med-q", str(tmp_path / "q"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["kind"] == "sentence-transformer-router"
    done = runner.invoke(app, ["models", "import", str(tmp_path / "q"), "med-q-cli", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["backend"] == "residual"
    refused = runner.invoke(app, ["models", "import", str(tmp_path / "nothing"), "x"])
    said = " ".join(refused.output.split())  # rich wraps long lines
    assert refused.exit_code == 2 and "error: src:" in said and "is not a folder" in said
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0 and "med-q-cli" in listed.stdout
