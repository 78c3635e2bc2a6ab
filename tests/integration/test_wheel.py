"""A built wheel carries the adaptrank.* namespace (and nothing top-level) and imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contents_and_import(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("adaptrank-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"adaptrank", wheel.name.split("-py")[0] + ".dist-info"}, tops
    for pkg in ("core", "core/engine", "core/llm", "server", "agents", "training", "integrations"):
        assert f"adaptrank/{pkg}/__init__.py" in names
    assert "adaptrank/__init__.py" not in names  # a namespace package: no one owns the root
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import adaptrank.core, adaptrank.server; print(adaptrank.core.__file__)",
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().startswith(str(target))
