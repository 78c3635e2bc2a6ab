"""Model store: validated names, atomic versions, the ACTIVE pointer, hot swap in the engine."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from adaptrank.core import InputError, NotFoundError, Reranker
from adaptrank.core.modelstore import ModelStore


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "x" * 65, "a b", "..", "/abs"])
def test_names_cannot_escape_the_store(tmp_path, bad):
    store = ModelStore(tmp_path)
    with pytest.raises(InputError, match="name"), store.writing(bad, {"backend": "cross-encoder"}):
        pass
    assert list(tmp_path.iterdir()) == []


def test_version_appears_only_when_complete(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(RuntimeError), store.writing("m", {"backend": "cross-encoder"}) as d:
        (d / "weights.bin").write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert store.versions("m") == []
    assert [p.name for p in (tmp_path / "m").iterdir()] == []  # no temp dir left behind

    with store.writing("m", {"backend": "cross-encoder", "loss": "lce"}, version="v1") as d:
        (d / "weights.bin").write_bytes(b"ok")
    ref = store.get("m", "v1")
    assert ref.card.loss == "lce" and ref.card.name == "m" and not ref.active
    with pytest.raises(NotFoundError, match="no active version"):
        store.get("m")
    store.activate("m", "v1")
    assert store.get("m").version == "v1" and store.get("m").active
    with pytest.raises(NotFoundError):
        store.activate("m", "v9")
    assert store.active_version("m") == "v1"


def test_new_version_ids_sort_by_creation(tmp_path):
    store = ModelStore(tmp_path)
    ids = []
    for _ in range(3):
        with store.writing("m", {"backend": "bi-encoder"}) as d:
            ids.append(d)
    versions = store.versions("m")
    assert len(versions) == 3 and versions == sorted(versions)


def _save(store: ModelStore, src: str, version: str) -> None:
    with store.writing("live", {"backend": "cross-encoder", "base_model": src}, version=version) as d:
        shutil.copytree(src, d, dirs_exist_ok=True)


def test_engine_follows_the_active_version_without_dropping_requests(settings, tiny_cross_encoder, tmp_path):
    """Hot swap: activating v2 (what a promotion does) while four clients are reranking fails none of
    their requests, and new requests are scored by v2."""
    import torch
    from sentence_transformers import CrossEncoder

    store = ModelStore(settings.models_dir)
    _save(store, tiny_cross_encoder, "v1")
    store.activate("live", "v1")
    ce = CrossEncoder(tiny_cross_encoder, num_labels=1)
    with torch.no_grad():
        ce.model.classifier.bias += 3.0  # a visibly different model
    ce.save(str(tmp_path / "v2"))
    _save(store, str(tmp_path / "v2"), "v2")

    rr = Reranker(settings=settings, store=store)
    docs = ["alpha passage", "beta passage", "gamma passage"]
    first = rr.rerank("alpha", docs, model="live")
    assert (first.model, first.version) == ("live", "v1")
    seen: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 400:  # bounded
            n += 1
            try:
                r = rr.rerank(f"query {i} {n}", docs, model="live")
                assert len(r.results) == 3
                seen.append(r.version)
            except BaseException as exc:  # noqa: BLE001 - any failure is a dropped request
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while "v1" not in seen and time.time() < deadline:
        time.sleep(0.01)
    store.activate("live", "v2")
    mark = len(seen)
    while "v2" not in seen[mark:] and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(30)
    second = rr.rerank("alpha", docs, model="live")
    rr.close()
    assert not errors, errors[:3]
    assert set(seen) == {"v1", "v2"}
    assert seen[-1] == "v2" and "v1" not in seen[-4:]  # after the switch, new requests get v2
    assert second.version == "v2"
    assert [r.score for r in second.results] != [r.score for r in first.results]


def test_a_writer_killed_mid_write_leaves_no_version_and_its_temp_dir_is_swept(tmp_path):
    """kill -9 while a version is being written: the store never lists it, and the next write in
    that folder removes what the dead writer left (a live writer's temp dir is kept)."""
    import os
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from adaptrank.core.modelstore import ModelStore\n"
        f"with ModelStore({str(tmp_path)!r}).writing('m', {{'backend': 'cross-encoder'}}, version='v2') as d:\n"
        "    (d / 'weights.bin').write_bytes(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    store = ModelStore(tmp_path)
    leftovers = [p.name for p in (tmp_path / "m").iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-v2-") and store.versions("m") == []
    with store.writing("m", {"backend": "cross-encoder"}, version="v3") as d:
        ours = d.name  # a live writer's temp dir
        assert (tmp_path / "m" / ours).is_dir() and not (tmp_path / "m" / leftovers[0]).exists()
        (d / "weights.bin").write_bytes(b"ok")
    assert store.versions("m") == ["v3"] and not list((tmp_path / "m").glob(".tmp-*"))
