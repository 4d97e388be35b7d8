"""The model tables: versions, per-key scoring state and scores, written in the batch's own transaction.

- `sinkframe_models`: one row per fitted version (connector, name, version,
  trained range, fit metrics, parameters as jsonb). Written by `models fit`.
- `sinkframe_model_states`: per (connector, model, key) what scoring the key's
  next rows needs (the lagged loads, newest time, smoothing) and the version it
  was scored with; read and saved by the scorer on the cursor that writes the
  batch's rows and advances its offsets, so a replay starts from the last commit.
- `sinkframe_scores`: per (connector, model, key, minute) the highest score, any
  alarm and the rows scored; upserted with the batch. A hypertable with a
  retention policy on TimescaleDB, a plain table on PostgreSQL.

Floats are stored as double precision and psycopg sends them in full, so a
state read back is the state saved, bit for bit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from sinkframe.models.detector import KeyState
from sinkframe.pipeline.write.copystage import CopyStage

log = logging.getLogger(__name__)

MODELS_TABLE = "sinkframe_models"
STATES_TABLE = "sinkframe_model_states"
SCORES_TABLE = "sinkframe_scores"
SCORES_RETENTION = "30 days"  # scores older than this are dropped by TimescaleDB's retention policy
SCORES_CHUNK = "1 day"
_MODELS, _STATES, _SCORES = map(sql.Identifier, (MODELS_TABLE, STATES_TABLE, SCORES_TABLE))

CREATE_MODELS_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    connector text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    trained_from timestamptz,
    trained_until timestamptz,
    fitted_at timestamptz NOT NULL DEFAULT now(),
    metrics jsonb NOT NULL,
    parameters jsonb NOT NULL,
    PRIMARY KEY (connector, name, version)
)""").format(table=_MODELS)

CREATE_STATES_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    connector text NOT NULL,
    model text NOT NULL,
    score_key text NOT NULL,
    model_version integer NOT NULL,
    peak2 double precision,
    mean double precision,
    last_time double precision,
    off_time double precision,
    smoothed double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, model, score_key)
)""").format(table=_STATES)

CREATE_SCORES_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    connector text NOT NULL,
    model text NOT NULL,
    model_version integer NOT NULL,
    score_key text NOT NULL,
    bucket timestamptz NOT NULL,
    score double precision NOT NULL,
    alarm boolean NOT NULL,
    rows integer NOT NULL,
    PRIMARY KEY (connector, model, score_key, bucket)
)""").format(table=_SCORES)

# "The worst keys lately" scans the newest buckets.
CREATE_SCORES_INDEX = sql.SQL("CREATE INDEX IF NOT EXISTS {index} ON {table} (bucket DESC)").format(
    index=sql.Identifier(f"{SCORES_TABLE}_bucket_idx"), table=_SCORES)

MODEL_DDL: tuple[sql.Composed, ...] = (CREATE_MODELS_TABLE, CREATE_STATES_TABLE, CREATE_SCORES_TABLE,
                                       CREATE_SCORES_INDEX)

_HAS_TIMESCALE = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
_HYPERTABLE = ("SELECT create_hypertable(%s::regclass, by_range('bucket', %s::interval), if_not_exists => TRUE, "
               "migrate_data => TRUE)")
_RETENTION = "SELECT add_retention_policy(%s::regclass, %s::interval, if_not_exists => TRUE)"

_LATEST = sql.SQL("SELECT name, max(version) FROM {table} WHERE connector = %s AND name = ANY(%s::text[]) "
                  "GROUP BY name").format(table=_MODELS)
_VERSION = sql.SQL("SELECT parameters FROM {table} WHERE connector = %s AND name = %s AND version = %s").format(
    table=_MODELS)
_INSERT_VERSION = sql.SQL(
    "INSERT INTO {table} (connector, name, version, trained_from, trained_until, metrics, parameters) "
    "SELECT %s, %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s FROM {table} WHERE connector = %s AND name = %s "
    "RETURNING version").format(table=_MODELS)
_LOAD_STATES = sql.SQL(
    "SELECT score_key, model_version, peak2, mean, last_time, off_time, smoothed FROM {table} "
    "WHERE connector = %s AND model = %s AND score_key = ANY(%s::text[])").format(table=_STATES)
_SAVE_STATES = sql.SQL(
    "INSERT INTO {table} (connector, model, score_key, model_version, peak2, mean, last_time, off_time, smoothed) "
    "SELECT %s, %s, k, %s, p, m, t, o, s FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[], "
    "%s::float8[], %s::float8[]) AS u(k, p, m, t, o, s) "
    "ON CONFLICT (connector, model, score_key) DO UPDATE SET model_version = EXCLUDED.model_version, "
    "peak2 = EXCLUDED.peak2, mean = EXCLUDED.mean, last_time = EXCLUDED.last_time, off_time = EXCLUDED.off_time, "
    "smoothed = EXCLUDED.smoothed, updated_at = now()").format(table=_STATES)
# Scores from `source` (columns k, b, s, a, n) merged into their minutes' rows: the highest score, any
# alarm, the rows counted; the newest version.
_MERGE_SCORES = sql.SQL(
    "INSERT INTO {table} AS stored (connector, model, model_version, score_key, bucket, score, alarm, rows) "
    "SELECT %s, %s, %s, k, to_timestamp(b), s, a, n FROM {source} "
    "ON CONFLICT (connector, model, score_key, bucket) DO UPDATE SET "
    "score = GREATEST(stored.score, EXCLUDED.score), alarm = stored.alarm OR EXCLUDED.alarm, "
    "rows = stored.rows + EXCLUDED.rows, model_version = GREATEST(stored.model_version, EXCLUDED.model_version)")
_UPSERT_SCORES = _MERGE_SCORES.format(table=_SCORES, source=sql.SQL(
    "unnest(%s::text[], %s::float8[], %s::float8[], %s::bool[], %s::integer[]) AS u(k, b, s, a, n)"))
# The scores of a batch staged by binary COPY (pipeline/write/copystage.py), merged by the same statement.
SCORES_STAGE = CopyStage(("text", "float8", "float8", "bool", "int4"))
_UPSERT_STAGED = SCORES_STAGE.merge(_MERGE_SCORES.format(table=_SCORES, source=sql.SQL("staged AS u(k, b, s, a, n)")))


def create_model_tables(conn) -> None:
    """The three tables (idempotent); on TimescaleDB the scores become a hypertable with retention."""
    for statement in MODEL_DDL:
        conn.execute(statement)
    if conn.execute(_HAS_TIMESCALE).fetchone()[0]:
        conn.execute(_HYPERTABLE, (SCORES_TABLE, SCORES_CHUNK))
        conn.execute(_RETENTION, (SCORES_TABLE, SCORES_RETENTION))


def latest_versions(cur, connector: str, names: Sequence[str]) -> dict[str, int]:
    """name -> newest stored version, for the models that have one (one indexed query)."""
    cur.execute(_LATEST, (connector, list(names)))
    return dict(cur.fetchall())


def versions_before(cur, connector: str, name: str, version: int) -> list[int]:
    """The model's versions older than `version`, newest first."""
    cur.execute(sql.SQL("SELECT version FROM {} WHERE connector = %s AND name = %s AND version < %s "
                        "ORDER BY version DESC").format(_MODELS), (connector, name, version))
    return [found for (found,) in cur.fetchall()]


def version_parameters(cur, connector: str, name: str, version: int) -> Any:
    cur.execute(_VERSION, (connector, name, version))
    found = cur.fetchone()
    return None if found is None else found[0]


def save_version(conn, connector: str, name: str, *, trained_from: datetime | None, trained_until: datetime | None,
                 metrics: Mapping[str, Any], parameters: Mapping[str, Any]) -> int:
    """Store a new version (the next number for this model) and return it."""
    with conn.transaction():
        # Two fits of one model at once would both choose the same next number.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{MODELS_TABLE}/{connector}/{name}",))
        return conn.execute(_INSERT_VERSION, (connector, name, trained_from, trained_until, Jsonb(metrics),
                                              Jsonb(parameters), connector, name)).fetchone()[0]


def load_states(cur, connector: str, model: str, version: int, keys: Sequence[str]) -> dict[str, KeyState]:
    """The saved states of these keys scored with `version`; a key scored with another version starts afresh."""
    cur.execute(_LOAD_STATES, (connector, model, list(keys)))
    return {key: KeyState(peak2, mean, last, off, smoothed)
            for key, saved_version, peak2, mean, last, off, smoothed in cur.fetchall()
            if saved_version == version}


def save_states(cur, connector: str, model: str, version: int, states: Mapping[str, KeyState]) -> None:
    keys = sorted(states)  # the same lock order for two writers touching the same keys
    if not keys:
        return
    chosen = [states[key] for key in keys]
    cur.execute(_SAVE_STATES, (connector, model, version, keys, [s.peak2 for s in chosen], [s.mean for s in chosen],
                               [s.time for s in chosen], [s.off for s in chosen], [s.smoothed for s in chosen]))


def upsert_scores(cur, connector: str, model: str, version: int, keys: Sequence[str], buckets: Sequence[float],
                  scores: Sequence[float], alarms: Sequence[bool], rows: Sequence[int], *, copy: bool = False) -> None:
    """Merge per-minute scores (bucket: epoch s of the minute) into what the minute already holds.

    `copy`: stage them by binary COPY, whose rows psycopg encodes in C, rather than as array
    parameters, which it encodes element by element in Python (several times the sink's CPU per
    score row, measured); for servers without COPY, arrays."""
    if not keys:
        return
    if not copy:
        cur.execute(_UPSERT_SCORES, (connector, model, version, list(keys), list(buckets), list(scores),
                                     list(alarms), list(rows)))
        return
    SCORES_STAGE.stage(cur, zip(keys, buckets, scores, alarms, rows))
    cur.execute(_UPSERT_STAGED, (connector, model, version))


# -- reading, for `models list`, `status` and `evaluate` ---------------------------------------

@dataclass(frozen=True)
class StoredVersion:
    connector: str
    name: str
    version: int
    trained_from: datetime | None
    trained_until: datetime | None
    fitted_at: datetime
    metrics: dict


@dataclass(frozen=True)
class WorstKey:
    connector: str
    model: str
    score_key: str
    score: float
    alarm: bool
    bucket: datetime


def _exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def list_versions(conn, connector: str | None = None) -> list[StoredVersion]:
    """Every stored version (of one connector, if given), by connector, name and version; [] before any."""
    if not _exists(conn, MODELS_TABLE):
        return []
    where, params = (sql.SQL(" WHERE connector = %s"), [connector]) if connector else (sql.SQL(""), [])
    query = sql.SQL("SELECT connector, name, version, trained_from, trained_until, fitted_at, metrics FROM {} {} "
                    "ORDER BY connector, name, version").format(_MODELS, where)
    with conn.cursor(row_factory=class_row(StoredVersion)) as cur:
        return cur.execute(query, params).fetchall()


def worst_keys(conn, connector: str, *, since: datetime, limit: int = 5) -> list[WorstKey]:
    """The keys with the highest score since `since`, worst first (their newest bucket at that score)."""
    if not _exists(conn, SCORES_TABLE):
        return []
    query = sql.SQL(
        "SELECT DISTINCT ON (model, score_key) connector, model, score_key, score, alarm, bucket FROM {} "
        "WHERE connector = %s AND bucket >= %s ORDER BY model, score_key, score DESC, bucket DESC").format(_SCORES)
    with conn.cursor(row_factory=class_row(WorstKey)) as cur:
        found = cur.execute(query, (connector, since)).fetchall()
    return sorted(found, key=lambda w: (-w.score, w.model, w.score_key))[:limit]
