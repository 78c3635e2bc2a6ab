"""medquad-dev for the benches that search it: where it lies, and the full corpus ingested once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad-dev"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/medquad-dev")


def ingest_medquad(store: Any, collection: str, home: str) -> None:
    """Ingest (or confirm unchanged) the whole corpus into ``collection`` and print what happened."""
    from adaptrank.core.ingest import ingest

    t0 = time.perf_counter()
    rep = ingest(store, DATA, collection, progress=True)
    print(
        f"ingest: {rep.documents} documents -> {rep.collection_count} chunks in {collection!r} "
        f"({rep.added} added, {rep.unchanged} unchanged) in {time.perf_counter() - t0:.1f}s; home {home}"
    )
