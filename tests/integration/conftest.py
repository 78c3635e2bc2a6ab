"""Fixtures the MCP search tests share: the three-document corpus, services over it, the app."""

from __future__ import annotations

import pytest
from search_corpus import write_corpus

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def services(tmp_path, corpus, minilm):
    s = Services(
        Settings(
            home=tmp_path / "home", allowed_roots=[corpus], embedding_model=minilm, default_model=f"bi-encoder:{minilm}"
        )
    )
    yield s
    s.close()


@pytest.fixture
def app(services):
    return create_app(services=services)
