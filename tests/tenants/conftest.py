"""Tenants under test: unique names (roles are cluster-wide) and their roles dropped afterwards."""
from __future__ import annotations

import pytest

from tenanthelp import drop_roles, unique


@pytest.fixture
def tenant_names(pg_dsn):
    """tenant_names("acme", "globex") -> unique names; their roles are dropped before the database is."""
    made: list[str] = []

    def make(*bases: str) -> list[str]:
        names = [unique(b) for b in bases]
        made.extend(names)
        return names

    yield make
    drop_roles(pg_dsn, made)
