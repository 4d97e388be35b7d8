"""`sinkframe export`: rows of a table or continuous aggregate in a time range, streamed out with COPY.

The server does the formatting (`COPY (SELECT ...) TO STDOUT`), the client only
moves bytes, so exports of any size run in constant memory. COPY takes no bind
parameters: the statement is composed with `psycopg.sql`, names as
`sql.Identifier` and values (time bounds, device id) as `sql.Literal`, which
quotes them safely.

Formats: `csv` (with a header line) and `json` (JSON Lines: one object per row,
`row_to_json` of the row). Times are written in UTC.

`tenant`: the relation is read from that registered tenant's schema
(`tenant_NAME`, see sinkframe.tenants), named as a qualified identifier.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, TextIO

import psycopg
from psycopg import sql

from sinkframe.errors import ConfigError, SinkframeError
from sinkframe.ops.health import error_line
from sinkframe.config.settings import Settings
from sinkframe.tenants.registry import check_name, known_tenants

TIME_COLUMNS = ("time", "bucket")  # hypertables, then continuous aggregates

_COLUMNS = sql.SQL(
    "SELECT column_name FROM information_schema.columns WHERE table_schema = {schema} AND table_name = %s "
    "ORDER BY ordinal_position")
_RELATIONS = sql.SQL("SELECT table_name FROM information_schema.tables WHERE table_schema = {schema} "
                     "ORDER BY table_name")


@dataclass(frozen=True)
class ExportRequest:
    relation: str  # a table or view name, optionally schema-qualified ("public.smart_breaker_data")
    since: datetime  # inclusive
    until: datetime  # exclusive
    device_id: str | None = None
    fmt: str = "csv"  # csv or json
    time_column: str | None = None  # default: `time`, else `bucket`
    tenant: str | None = None  # read from this tenant's schema (relation then unqualified)


@dataclass
class ExportResult:
    rows: int
    bytes: int
    time_column: str


def export_to(settings: Settings, request: ExportRequest, out: BinaryIO, *, progress: bool = False,
              progress_stream: TextIO | None = None) -> ExportResult:
    if request.fmt not in ("csv", "json"):
        raise ConfigError(f"unknown export format {request.fmt!r}; use csv or json")
    if request.since >= request.until:
        raise ConfigError(f"--since ({request.since.isoformat()}) must be before --until "
                          f"({request.until.isoformat()})")
    if request.tenant is not None:
        check_name(request.tenant)
        if "." in request.relation:
            raise ConfigError(f"--tenant {request.tenant} reads from schema tenant_{request.tenant}: name the "
                              f"table without a schema (not {request.relation!r})")
    try:
        conn = psycopg.connect(settings.dsn, connect_timeout=10, autocommit=True,
                               application_name="sinkframe-export")
    except psycopg.Error as err:
        raise SinkframeError(f"cannot connect to the database ({settings.redacted_dsn}): "
                             f"{error_line(err, settings.dsn)}") from None
    with conn:
        conn.execute(sql.SQL("SET TimeZone = 'UTC'"))
        query, time_column = compose_select(conn, request)
        estimate = _estimated_rows(conn, query) if progress else None
        meter = _Meter(request.relation, estimate, progress_stream or sys.stderr) if progress else None
        written = 0
        try:
            with conn.cursor() as cur:
                with cur.copy(compose_copy(query, request.fmt)) as copy:
                    for chunk in copy:
                        out.write(chunk)
                        written += len(chunk)
                        if meter:
                            meter.update(chunk, written)
                rows = cur.rowcount
        except psycopg.Error as err:
            raise SinkframeError(f"exporting {request.relation}: {error_line(err, settings.dsn)}") from err
        finally:
            if meter:
                meter.close()
        out.flush()
    return ExportResult(rows, written, time_column)


def compose_select(conn: psycopg.Connection, request: ExportRequest) -> tuple[sql.Composed, str]:
    """The SELECT for the request, after checking the relation and its columns exist."""
    schema, _, name = request.relation.rpartition(".")
    if request.tenant is not None:
        schema = _tenant_schema(conn, request.tenant)
    schema_sql = sql.Literal(schema) if schema else sql.SQL("current_schema()")
    columns = [r[0] for r in conn.execute(_COLUMNS.format(schema=schema_sql), (name,)).fetchall()]
    if not columns:
        known = [r[0] for r in conn.execute(_RELATIONS.format(schema=schema_sql)).fetchall()]
        where = f"schema {schema}" if schema else "this database"
        raise ConfigError(f"no table or view named {name!r} in {where}; there: {', '.join(known) or 'none'}")
    time_column = request.time_column or next((c for c in TIME_COLUMNS if c in columns), None)
    if time_column not in columns:
        raise ConfigError(f"{request.relation} has no time column "
                          f"{time_column or ' or '.join(TIME_COLUMNS)!r}; choose one with --time-column "
                          f"(columns: {', '.join(columns)})")
    relation = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    tcol = sql.Identifier(time_column)
    where = [sql.SQL("{} >= {}").format(tcol, sql.Literal(request.since)),
             sql.SQL("{} < {}").format(tcol, sql.Literal(request.until))]
    order = [tcol]
    if "device_id" in columns:
        order.append(sql.Identifier("device_id"))
    if request.device_id is not None:
        if "device_id" not in columns:
            raise ConfigError(f"{request.relation} has no device_id column, so --device cannot filter it")
        where.append(sql.SQL("{} = {}").format(sql.Identifier("device_id"), sql.Literal(request.device_id)))
    query = sql.SQL("SELECT * FROM {} WHERE {} ORDER BY {}").format(
        relation, sql.SQL(" AND ").join(where), sql.SQL(", ").join(order))
    return query, time_column


def _tenant_schema(conn: psycopg.Connection, tenant: str) -> str:
    schemas = known_tenants(conn)
    if tenant not in schemas:
        raise ConfigError(f"no tenant named {tenant!r} (registered: {', '.join(schemas) or 'none'}); a removed "
                          f"tenant's kept tables can still be named in full: tenant_{tenant}.TABLE")
    return schemas[tenant]


def compose_copy(query: sql.Composed, fmt: str) -> sql.Composed:
    if fmt == "csv":
        return sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(query)
    # JSON Lines. COPY's text format would escape the backslashes inside the JSON;
    # CSV with quote and delimiter characters that JSON text never contains raw
    # (control characters are always \u-escaped in JSON) passes it through verbatim.
    return sql.SQL("COPY (SELECT row_to_json(r) FROM ({}) AS r) TO STDOUT "
                   "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')").format(query)


def _estimated_rows(conn: psycopg.Connection, query: sql.Composed) -> int | None:
    """The planner's row estimate, for the progress bar (cheap: nothing is read)."""
    try:
        plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query)).fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])
    except (psycopg.Error, LookupError, TypeError, ValueError):
        return None


class _Meter:
    """A progress line on stderr: rows so far (of the planner's estimate), bytes, rate."""

    def __init__(self, relation: str, estimate: int | None, stream: TextIO):
        self.relation, self.estimate, self.stream = relation, estimate, stream
        self.lines = 0
        self.started = time.monotonic()
        self.next_draw = self.started + 0.5
        self.drawn = False

    def update(self, chunk, written: int) -> None:
        self.lines += bytes(chunk).count(b"\n")  # COPY hands out memoryviews
        now = time.monotonic()
        if now < self.next_draw:
            return
        self.next_draw = now + 0.5
        rate = written / max(now - self.started, 1e-9)
        # The planner's estimate can be off (stale statistics): past it, show no share at all.
        share = f" (~{self.lines / self.estimate:.0%})" if self.estimate and self.lines < self.estimate else ""
        self.stream.write(f"\r\x1b[2Kexporting {self.relation}: {self.lines:,} rows{share}, "
                          f"{written / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
