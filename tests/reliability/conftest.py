"""Fixtures of the reliability tests (real broker, real PostgreSQL; see SERVICES.md)."""
from __future__ import annotations

import pytest

from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries


@pytest.fixture
def private_pg():
    """A PostgreSQL server of this test's own (trust auth), free to be stopped and restarted."""
    skip_without_server_binaries()
    with PrivatePostgres() as server:
        yield server
