"""Every fine-tuning test runs with the tiny bi-encoder as the 'zero-shot default' (the fixture is in
tests/unit/conftest.py; the toy datasets in tests/support/toy_datasets.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def tiny_zero_shot(tiny_zero_shot):
    return tiny_zero_shot
