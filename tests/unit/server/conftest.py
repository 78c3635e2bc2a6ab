"""Fixtures for the server's unit tests."""

from __future__ import annotations

import pytest

from adaptrank.server.app import create_app


@pytest.fixture
def app(services):
    """The MCP app over the test module's own ``services`` fixture."""
    return create_app(services=services)
