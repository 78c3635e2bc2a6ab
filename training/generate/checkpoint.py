"""The generation checkpoint: finished documents survive a cancel, a crash or a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Checkpoint:
    """``done.jsonl``: one line per finished document (its groups and counters)."""

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.folder = Path(folder) if folder else None
        self.done: dict[str, dict[str, Any]] = {}
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self.folder / "state.json"
        if state.is_file() and json.loads(state.read_text()).get("fingerprint") != fingerprint:
            # Different parameters: the old work does not apply.
            (self.folder / "done.jsonl").unlink(missing_ok=True)
        state.write_text(json.dumps({"fingerprint": fingerprint}))
        path = self.folder / "done.jsonl"
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a torn last line from a crash: that document is redone
                    self.done[row["doc_id"]] = row

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.done[row["doc_id"]] = row
        if self.folder is None:
            return
        with open(self.folder / "done.jsonl", "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
