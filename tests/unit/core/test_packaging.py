"""The explicit package list in pyproject.toml must match the folders on disk, and the folders
must only be importable through the adaptrank namespace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[3]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_list_matches_init_files_on_disk():
    cfg = _config()
    mapping = cfg["package-dir"]
    declared = set(cfg["packages"])
    assert declared == set(mapping), "every package needs a package-dir entry"
    on_disk = set()
    for top in ("core", "server", "agents", "training", "integrations"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            on_disk.add("adaptrank." + ".".join(rel.parts))
    assert on_disk == declared, f"missing from pyproject: {on_disk - declared}; stale: {declared - on_disk}"
    for name, folder in mapping.items():
        assert name == "adaptrank." + folder.replace("/", "."), (name, folder)


def test_folders_import_only_as_adaptrank_namespace():
    assert str(ROOT) not in sys.path
    assert importlib.util.find_spec("server") is None
    assert importlib.util.find_spec("agents") is None
    import adaptrank.core
    import adaptrank.server

    assert Path(adaptrank.core.__file__).parent == ROOT / "core"
    assert Path(adaptrank.server.__file__).parent == ROOT / "server"
    assert not (ROOT / "tests" / "__init__.py").exists()
