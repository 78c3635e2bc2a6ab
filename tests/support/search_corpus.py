"""The three-document corpus the search and Chroma integration tests share."""

from __future__ import annotations

from pathlib import Path

DOCS = {
    "gout.md": "# Gout\n\nGout is caused by uric acid crystals that form in the joints.",
    "asthma.md": "# Asthma\n\nAsthma is treated with inhaled corticosteroids and bronchodilators.",
    "paris.txt": "Paris is the capital of France and its largest city.",
}
Q = "What causes gout, and how is asthma treated?"


def write_corpus(root: Path) -> Path:
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text)
    return root
