"""The contract between a connector's mapper and the tables it writes, checked before any row is.

The table spec (`schema/`) declares a table; a mapper's `Target` says which of
its columns the mapper fills, and as what type. Each check here turns a failure
that would otherwise surface in the database, at the first batch, into a line
naming the connector file, the plugin, the table, the column and where the table
is declared:

- the mapper fills a column the table does not have;
- the mapper's type for a column is not the table's (spellings normalised:
  int4 = integer, float8 = double precision, timestamptz = timestamp with time
  zone; a mapper type without a modifier matches the table's with one, so
  `varchar` fits `varchar(20)`, as binary COPY does);
- a NOT NULL column without a default (or identity) is not filled by the mapper;
- an upserting target's key is not a primary key or unique constraint of the table;
- no spec declares the table at all.

`target_problems` checks against the specs (`sinkframe validate`, offline);
`check_live_targets` against the tables in the database (`sinkframe run`, at start).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

from psycopg import sql

from sinkframe.errors import ConfigError
from sinkframe.mapping.base import Target
from sinkframe.schema.introspect import execute
from sinkframe.schema.spec import SchemaSpec, TableSpec, canonical_type

if TYPE_CHECKING:
    import psycopg

    from sinkframe.config.connector import ConnectorConfig


class BoundTarget(Protocol):
    """A mapper target bound to the table a connector writes it to (pipeline.write.writer.ResolvedTarget)."""

    role: str
    table: str
    target: Target


@dataclass(frozen=True)
class DeclaredColumn:
    name: str
    type: str
    nullable: bool
    has_default: bool  # a default expression or an identity: the database fills it
    where: str  # "schema/x.yaml:12", or the live table
    generated: bool = False  # GENERATED ALWAYS AS (...): nobody may fill it


@dataclass(frozen=True)
class DeclaredTable:
    """A table as the specs or the database declare it, in the terms the checks need."""

    name: str
    where: str
    columns: Mapping[str, DeclaredColumn]
    unique_keys: Sequence[frozenset[str]] = field(default_factory=tuple)

    @classmethod
    def from_spec(cls, table: TableSpec) -> "DeclaredTable":
        keys = [table.primary_key] if table.primary_key else []
        keys += list(table.unique)
        unique = [frozenset(k.columns) for k in keys]
        unique += [frozenset(c.name for c in ix.columns) for ix in table.indexes if ix.unique]
        columns = {c.name: DeclaredColumn(c.name, c.type, c.nullable, c.default is not None, c.where or table.where)
                   for c in table.columns}
        return cls(table.name, table.where, columns, unique)


# --- offline: against the specs ----------------------------------------------------------------

def target_problems(connector: "ConnectorConfig", targets: Mapping[str, BoundTarget],
                    spec: SchemaSpec) -> list[str]:
    """Every mismatch between the connector's targets and the specs, as `file:line::$.path: message`."""
    declared = {name: DeclaredTable.from_spec(t) for name, t in spec.tables.items()}
    problems = []
    for role, bound in sorted(targets.items()):
        table = declared.get(bound.table)
        if table is None:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(_problem(connector, role, f"table {bound.table!r} (role {role!r}) is declared in no "
                                                      f"schema spec; plugin {connector.plugin!r} writes it; "
                                                      f"known tables: {known}"))
            continue
        problems += [_problem(connector, role, m) for m in compare_target(connector.plugin, bound, table)]
    return problems


# --- at start: against the live tables --------------------------------------------------------

_LIVE_COLUMNS = sql.SQL(
    "SELECT t.name, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
    "a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' "
    "FROM unnest(%s::text[]) AS t(name) "
    "JOIN pg_attribute a ON a.attrelid = to_regclass(quote_ident(t.name)) "
    "WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY t.name, a.attnum")
# Unique indexes ON CONFLICT can infer: no predicate, no expression.
_LIVE_UNIQUE_KEYS = sql.SQL(
    "SELECT t.name, ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum) "
    "                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) "
    "FROM unnest(%s::text[]) AS t(name) "
    "JOIN pg_index i ON i.indrelid = to_regclass(quote_ident(t.name)) "
    "WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL")


def check_live_targets(conn: "psycopg.Connection",
                       connectors: Iterable[tuple["ConnectorConfig", Mapping[str, BoundTarget]]]) -> None:
    """Check each (connector, its targets) against the tables as they are in the database now.

    Tables resolve as the writer's unqualified names do (the connection's
    search_path). Raises ConfigError listing every problem of every connector.
    """
    connectors = list(connectors)
    names = sorted({bound.table for _, targets in connectors for bound in targets.values()})
    live = read_live_tables(conn, names)
    problems = []
    for connector, targets in connectors:
        for role, bound in sorted(targets.items()):
            table = live.get(bound.table)
            if table is None:
                problems.append(_problem(connector, role, f"table {bound.table!r} (role {role!r}) does not exist "
                                                          "in the database (search_path "
                                                          f"{_search_path(conn)}); plugin {connector.plugin!r} "
                                                          "writes it"))
                continue
            problems += [_problem(connector, role, m) for m in compare_target(connector.plugin, bound, table)]
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) between the connectors and the database tables: "
                          f"{problems[0]}", problems)


def read_live_tables(conn: "psycopg.Connection", names: Sequence[str]) -> dict[str, DeclaredTable]:
    """The named tables that exist, with their columns and the unique keys ON CONFLICT can use."""
    columns: dict[str, dict[str, DeclaredColumn]] = {}
    for table, name, type_, nullable, has_default, generated in execute(conn, _LIVE_COLUMNS, [list(names)]):
        where = f"the database table {table}"
        columns.setdefault(table, {})[name] = DeclaredColumn(name, type_, nullable, has_default, where, generated)
    keys: dict[str, list[frozenset[str]]] = {}
    for table, key in execute(conn, _LIVE_UNIQUE_KEYS, [list(names)]):
        keys.setdefault(table, []).append(frozenset(key))
    return {table: DeclaredTable(table, f"the database table {table}", cols, keys.get(table, ()))
            for table, cols in columns.items()}


def _search_path(conn: "psycopg.Connection") -> str:
    return execute(conn, sql.SQL("SELECT current_setting('search_path')")).fetchone()[0]


# --- the comparison both use -----------------------------------------------------------------

def compare_target(plugin: str, bound: BoundTarget, table: DeclaredTable) -> list[str]:
    """What the database would refuse when `plugin` writes `bound` into `table`."""
    problems = []
    filled = set(bound.target.column_names)
    for column in bound.target.columns:
        declared = table.columns.get(column.name)
        if declared is None:
            problems.append(f"plugin {plugin!r} fills column {column.name!r} of table {table.name!r}, which "
                            f"{_as_declared(table.where)} does not have")
        elif declared.generated:
            problems.append(f"plugin {plugin!r} fills column {column.name!r} of table {table.name!r}, which is "
                            f"generated ({declared.where}): the database computes it")
        elif not types_match(column.pg_type, declared.type):
            problems.append(f"plugin {plugin!r} writes column {column.name!r} of table {table.name!r} as "
                            f"{canonical_type(column.pg_type)}, but {declared.where} declares it "
                            f"{canonical_type(declared.type)}")
    for declared in table.columns.values():
        if not declared.nullable and not declared.has_default and declared.name not in filled:
            problems.append(f"column {declared.name!r} of table {table.name!r} is NOT NULL without a default "
                            f"({declared.where}), and plugin {plugin!r} does not fill it: every row would be "
                            "refused")
    upsert = bound.target.upsert
    if upsert is not None and frozenset(upsert.key) not in table.unique_keys:
        problems.append(f"plugin {plugin!r} upserts into table {table.name!r} on ({', '.join(upsert.key)}), but "
                        f"{_as_declared(table.where)} has no primary key or unique constraint on exactly those "
                        "columns")
    return problems


_MODIFIER = re.compile(r"\(\s*\d+\s*(,\s*\d+\s*)?\)")


def types_match(written: str, declared: str) -> bool:
    """The mapper's type for a column is the table's, spelling aside.

    A written type without a modifier matches a declared one with it (`varchar` fits
    `varchar(20)`, `timestamptz` fits `timestamptz(3)`): the wire format is the same,
    and the database enforces the modifier on each value.
    """
    written, declared = canonical_type(written), canonical_type(declared)
    if written == declared:
        return True
    return not _MODIFIER.search(written) and _MODIFIER.sub("", declared) == written


def _as_declared(where: str) -> str:
    return where if where.startswith("the database") else f"its spec ({where})"


def _problem(connector: "ConnectorConfig", role: str, message: str) -> str:
    """Pointed at the connector's `tables.<role>` when it names the table, else at its plugin."""
    key = ("tables", role) if role in connector.tables else ("mapper", "plugin")
    return connector.doc.problem(key, message)
