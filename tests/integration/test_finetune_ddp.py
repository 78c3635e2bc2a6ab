"""The same `adaptrank finetune` command under `torchrun`: two CPU processes, the gloo backend, a
tiny model. Each rank trains on half of every batch (DDP); rank 0 saves and promotes, once."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from toy_datasets import TOPICS as ALL_TOPICS

from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings
from adaptrank.training.dataset import DatasetStore, Group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOPICS = ALL_TOPICS[:16]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset(settings: Settings) -> None:
    rng = random.Random(0)
    passages = {(t, k): f"{t} {t} {t} note {k} {t}" for t in TOPICS for k in range(2)}
    groups = []
    for (t, k), text in passages.items():
        negs = rng.sample([v for (t2, _), v in passages.items() if t2 != t], 3)
        groups.append(Group(query=f"tell me about {t}", positive=text, negatives=negs, doc_id=f"{t}-{k}"))
    DatasetStore(settings).write("toy", groups, {"source": {"kind": "toy"}}, dev_fraction=0.25)


@pytest.mark.parametrize("method", ["query-encoder", "cross-encoder"])
def test_torchrun_two_cpu_processes(tmp_path, tiny_bi_encoder, tiny_cross_encoder, method):
    settings = Settings(home=tmp_path / "home")
    _dataset(settings)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    adaptrank = shutil.which("adaptrank", path=str(Path(sys.executable).parent))
    assert torchrun and adaptrank
    base = tiny_bi_encoder if method == "query-encoder" else tiny_cross_encoder
    env = {
        **os.environ,
        "ADAPTRANK_HOME": str(settings.home),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
    }
    cmd = [
        torchrun,
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        adaptrank,
        "finetune",
        "toy",
        "-o",
        "toy-ddp",
        "--method",
        method,
        "--base-model",
        base,
        "-g",
        "4",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--patience",
        "0",
        "--precision",
        "fp32",
        "--json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)  # rank 0 prints the result, once; the trainer prints nothing

    store = ModelStore(settings.models_dir)
    assert store.versions("toy-ddp") == [result["version"]]
    card = store.get("toy-ddp", result["version"]).card
    # 24 training groups, 4 per device and step: one process would take 6 steps per epoch (18 in
    # all); two DDP ranks share each step's batch, so 3 per epoch, 9 in all.
    assert card.hyperparameters["steps"] == 9 and card.hyperparameters["train_groups"] == 24
    # The ranks stayed in sync: the best dev weights seen in training are what was saved and served
    # (fp32: bf16 autocast would make the in-training scores differ from the served ones).
    dev = [h["dev"] for h in card.extra["history"] if "dev" in h]
    assert result["metrics_after"]["dev_mrr@10"] == pytest.approx(max(dev), abs=1e-6)
