"""The mapper <-> table contract: type spellings, and the check against live tables (real PostgreSQL)."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from sinkframe.config.connector import load_connector
from sinkframe.errors import ConfigError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.runner import build_mapper, resolve_targets
from sinkframe.schema import apply_schema, load_schema
from sinkframe.schema.contract import check_live_targets, target_problems, types_match

REPO = Path(__file__).resolve().parents[2]
SPEC = load_schema(REPO / "schema", env={})


def shipped_connectors():
    registry = PluginRegistry()
    connectors = [load_connector(path, env={}) for path in sorted((REPO / "configs").glob("*.yaml"))]
    return [(c, resolve_targets(c, build_mapper(c, registry))) for c in connectors]


@pytest.mark.parametrize("written, declared, match", [
    ("int4", "integer", True),
    ("float8", "double precision", True),
    ("timestamptz", "timestamp with time zone", True),
    ("varchar", "character varying(20)", True),  # the database enforces the length
    ("varchar(20)", "varchar(20)", True),
    ("varchar(10)", "character varying(20)", False),
    ("timestamptz", "timestamp(3) with time zone", True),
    ("timestamp", "timestamp with time zone", False),
    ("text", "character varying", False),
    ("jsonb", "json", False),
    ("integer", "bigint", False),
    ("text[]", "text[]", True),
])
def test_type_spellings(written, declared, match):
    assert types_match(written, declared) is match


def test_the_shipped_connectors_match_the_shipped_specs():
    assert [p for c, targets in shipped_connectors() for p in target_problems(c, targets, SPEC)] == []


def test_live_tables_made_from_the_specs_match(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_schema(conn, SPEC, plain_postgres=True)
        check_live_targets(conn, shipped_connectors())


def test_live_tables_that_drifted_are_reported_all_at_once(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_schema(conn, SPEC, plain_postgres=True)
        conn.execute("ALTER TABLE smart_breaker_data DROP COLUMN reactive_power, "
                     "ALTER COLUMN trip_count TYPE text, ADD COLUMN site_id text NOT NULL, "
                     "ADD COLUMN row_id bigint GENERATED ALWAYS AS IDENTITY")
        conn.execute("ALTER TABLE device_metadata DROP CONSTRAINT device_metadata_pkey")
        conn.execute("DROP TABLE iot_raw_data CASCADE")
        with pytest.raises(ConfigError) as caught:
            check_live_targets(conn, shipped_connectors())
    problems = caught.value.problems
    breaker = str(REPO / "configs" / "smart_breaker.yaml")
    raw = str(REPO / "configs" / "raw.yaml")
    expected = [
        (breaker, "$.tables.measurements: plugin 'smart_breaker' fills column 'reactive_power' of table "
                  "'smart_breaker_data', which the database table smart_breaker_data does not have"),
        (breaker, "$.tables.measurements: plugin 'smart_breaker' writes column 'trip_count' of table "
                  "'smart_breaker_data' as integer, but the database table smart_breaker_data declares it text"),
        (breaker, "$.tables.measurements: column 'site_id' of table 'smart_breaker_data' is NOT NULL without a "
                  "default (the database table smart_breaker_data), and plugin 'smart_breaker' does not fill it"),
        (breaker, "$.tables.device_metadata: plugin 'smart_breaker' upserts into table 'device_metadata' on "
                  "(device_id), but the database table device_metadata has no primary key or unique constraint"),
        (raw, "$.tables.raw: table 'iot_raw_data' (role 'raw') does not exist in the database"),
    ]
    for path, message in expected:
        assert any(p.startswith(path + ":") and message in p for p in problems), (message, problems)
    assert not any("row_id" in p for p in problems)  # an identity column is filled by the database
    assert len([p for p in problems if p.startswith(breaker)]) == 4
    assert len(problems) == 4 + 1 + 1  # the enriched connector upserts device_metadata too
