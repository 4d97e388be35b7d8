"""Schema spec files: what tables, hypertables and continuous aggregates should exist.

A spec is one or more YAML files (usually the `schema/` folder). Every file may
declare `tables` and `continuous_aggregates`, each a mapping from object name to
its definition; the files are merged. `${VAR}` / `${VAR:-default}` references are
resolved from the environment when a file is read.

`SPEC_SCHEMA` (JSON Schema) checks the shape of each file; `_check_*` functions
then check what JSON Schema cannot (a column that does not exist, a primary key
of a hypertable without its time column, a refresh window that reaches past the
retention window...). Every problem in every file is collected before
`load_schema` raises, each as `file:line::$.key.path: message`.

A loaded table and each of its columns remember where they are declared
(`where`, `file:line`), so that a check against the spec elsewhere
(`sinkframe.schema.contract`) can point at the line to fix.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from sinkframe.config.connector import schema_problems
from sinkframe.config.yamlfile import YamlDocument, load_yaml
from sinkframe.errors import ConfigError

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)
IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
# A type name as PostgreSQL spells it, optionally with a type modifier and array brackets.
TYPE_NAME = r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?( *\[\])?$"
INDEX_COLUMN = r"(?i)^[a-z_][a-z0-9_]{0,62}( +(asc|desc))?( +nulls +(first|last))?$"
AGGREGATE_FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")
TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")

_identifier = {"type": "string", "pattern": IDENTIFIER}
_identifiers = {"type": "array", "items": _identifier, "minItems": 1}
_duration = {"type": "string", "minLength": 1,
             "description": "A PostgreSQL interval such as '1 hour' or '30 days'."}
_duration_or_null = {"type": ["string", "null"], "minLength": 1}

SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sinkframe schema spec file",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tables": {
            "type": "object",
            "description": "Table name -> definition.",
            "propertyNames": {"pattern": IDENTIFIER},
            "additionalProperties": {"$ref": "#/$defs/table"},
        },
        "continuous_aggregates": {
            "type": "object",
            "description": "Continuous aggregate (view) name -> definition.",
            "propertyNames": {"pattern": IDENTIFIER},
            "additionalProperties": {"$ref": "#/$defs/continuous_aggregate"},
        },
    },
    "$defs": {
        "column": {
            "type": "object", "additionalProperties": False, "required": ["name", "type"],
            "properties": {
                "name": _identifier,
                "type": {"type": "string", "pattern": TYPE_NAME, "description": "PostgreSQL type."},
                "description": {"type": "string", "description": "What the column holds (docs/tables.md)."},
                "nullable": {"type": "boolean", "default": True},
                "default": {"type": "string", "minLength": 1,
                            "description": "An SQL expression, e.g. now()."},
            },
        },
        "index": {
            "type": "object", "additionalProperties": False, "required": ["columns"],
            "properties": {
                "name": _identifier,
                "columns": {"type": "array", "minItems": 1,
                            "items": {"type": "string", "pattern": INDEX_COLUMN},
                            "description": "Column names, each optionally followed by ASC/DESC."},
                "unique": {"type": "boolean", "default": False},
            },
        },
        "table": {
            "type": "object", "additionalProperties": False, "required": ["columns"],
            "properties": {
                "description": {"type": "string"},
                "columns": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/column"}},
                "primary_key": _identifiers,
                "unique": {"type": "array", "items": _identifiers,
                           "description": "Unique constraints, each a list of columns."},
                "indexes": {"type": "array", "items": {"$ref": "#/$defs/index"}},
                "hypertable": {"$ref": "#/$defs/hypertable"},
            },
        },
        "hypertable": {
            "type": "object", "additionalProperties": False,
            "required": ["time_column", "chunk_time_interval"],
            "properties": {
                "time_column": _identifier,
                "chunk_time_interval": _duration,
                "partitioning": {
                    "type": "object", "additionalProperties": False,
                    "required": ["column", "number_partitions"],
                    "properties": {"column": _identifier,
                                   "number_partitions": {"type": "integer", "minimum": 1, "maximum": 32767}},
                },
                "compression": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "segment_by": {"type": "array", "items": _identifier},
                        "order_by": {"type": "array", "items": {"type": "string", "pattern": INDEX_COLUMN}},
                        "compress_after": _duration_or_null,
                    },
                },
                "retention": {
                    "type": "object", "additionalProperties": False, "required": ["drop_after"],
                    "properties": {"drop_after": _duration_or_null},
                },
            },
        },
        "aggregate": {
            "type": "object", "additionalProperties": False,
            "description": "Either function (+ column, + name) or functions x columns named <function>_<column>.",
            "properties": {
                "function": {"enum": list(AGGREGATE_FUNCTIONS)},
                "column": _identifier,
                "name": _identifier,
                "functions": {"type": "array", "minItems": 1, "items": {"enum": list(AGGREGATE_FUNCTIONS)}},
                "columns": _identifiers,
            },
        },
        "continuous_aggregate": {
            "type": "object", "additionalProperties": False,
            "required": ["source", "bucket_width", "aggregates"],
            "properties": {
                "description": {"type": "string"},
                "source": _identifier,
                "bucket_width": _duration,
                "time_column": _identifier,
                "bucket_column": _identifier,
                "group_by": {"type": "array", "items": _identifier},
                "aggregates": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/aggregate"}},
                "materialized_only": {"type": "boolean", "default": False},
                "refresh": {
                    "type": "object", "additionalProperties": False,
                    "required": ["start_offset", "end_offset", "schedule_interval"],
                    "properties": {"start_offset": _duration_or_null, "end_offset": _duration_or_null,
                                   "schedule_interval": _duration},
                },
                "retention": {
                    "type": "object", "additionalProperties": False, "required": ["drop_after"],
                    "properties": {"drop_after": _duration_or_null},
                },
            },
        },
    },
}


# --- the parsed spec ------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # canonical spelling (see canonical_type)
    nullable: bool = True
    default: str | None = None
    description: str = field(default="", compare=False)
    where: str = field(default="", compare=False)  # file:line of its declaration


@dataclass(frozen=True)
class KeyColumn:
    """A column of an index or of a compression order: name plus direction."""

    name: str
    descending: bool = False
    nulls_first: bool | None = None  # None: PostgreSQL's default for the direction

    @property
    def effective_nulls_first(self) -> bool:
        return self.descending if self.nulls_first is None else self.nulls_first

    def __str__(self) -> str:
        text = self.name + (" DESC" if self.descending else "")
        if self.nulls_first is not None and self.nulls_first != self.descending:
            text += " NULLS FIRST" if self.nulls_first else " NULLS LAST"
        return text


@dataclass(frozen=True)
class IndexSpec:
    name: str
    columns: tuple[KeyColumn, ...]
    unique: bool = False


@dataclass(frozen=True)
class ConstraintSpec:
    name: str
    kind: str  # "primary key" | "unique"
    columns: tuple[str, ...]


@dataclass(frozen=True)
class CompressionSpec:
    segment_by: tuple[str, ...] = ()
    order_by: tuple[KeyColumn, ...] = ()
    compress_after: str | None = None


@dataclass(frozen=True)
class HypertableSpec:
    time_column: str
    chunk_time_interval: str
    partition_column: str | None = None
    number_partitions: int | None = None
    compression: CompressionSpec | None = None
    drop_after: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: ConstraintSpec | None = None
    unique: tuple[ConstraintSpec, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    hypertable: HypertableSpec | None = None
    file: str = ""
    description: str = field(default="", compare=False)
    where: str = field(default="", compare=False)  # file:line of its declaration

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class AggregateSpec:
    function: str
    column: str | None
    name: str


@dataclass(frozen=True)
class RefreshSpec:
    start_offset: str | None
    end_offset: str | None
    schedule_interval: str


@dataclass(frozen=True)
class ContinuousAggregateSpec:
    name: str
    source: str
    bucket_width: str
    time_column: str
    bucket_column: str
    group_by: tuple[str, ...]
    aggregates: tuple[AggregateSpec, ...]
    materialized_only: bool = False
    refresh: RefreshSpec | None = None
    drop_after: str | None = None
    file: str = ""
    description: str = field(default="", compare=False)

    @property
    def column_names(self) -> list[str]:
        return [self.bucket_column, *self.group_by, *(a.name for a in self.aggregates)]


@dataclass(frozen=True)
class SchemaSpec:
    tables: Mapping[str, TableSpec] = field(default_factory=dict)
    continuous_aggregates: Mapping[str, ContinuousAggregateSpec] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    shipped_by: Mapping[str, str] = field(default_factory=dict)  # object -> "plugin raw", when a plugin's spec
    set_aside: tuple[str, ...] = ()  # shipped objects left out, and why

    def origin(self, name: str) -> str:
        """Where the spec of table or continuous aggregate `name` comes from: `file:line`, and who ships it."""
        obj = self.tables.get(name) or self.continuous_aggregates[name]
        where = obj.where if isinstance(obj, TableSpec) else obj.file
        return f"{where} (shipped with {self.shipped_by[name]})" if name in self.shipped_by else where

    def table_names(self) -> set[str]:
        """Every table (plain or hypertable) declared: what connectors may write."""
        return set(self.tables)

    def object_names(self) -> set[str]:
        return set(self.tables) | set(self.continuous_aggregates)


# --- loading -------------------------------------------------------------------------------

def load_schema(paths: str | os.PathLike | Iterable[str | os.PathLike],
                env: Mapping[str, str] | None = None, *,
                shipped: Mapping[Path, str] | None = None) -> SchemaSpec:
    """Load spec files: a folder (its *.yaml / *.yml, sorted), one file, or a list of both.

    `shipped`: spec files that come with plugins, each -> who ships it ("plugin raw").
    They fill in what `paths` leave out: a table of theirs is used when no file of
    `paths` declares that name; a continuous aggregate of theirs when its name is free
    and its source table is not one `paths` declare (a project that declares a table
    owns what is built on it; `SchemaSpec.set_aside` says what was left out).
    Raises ConfigError whose `.problems` lists every problem in every file.
    """
    env = os.environ if env is None else env
    found = _Declarations()
    files = _spec_files(paths)
    for doc in _read_spec_files(files, env, found.problems):
        for kind, name, body in _objects(doc):
            found.add(doc, kind, name, body)
    project = set(found.declared_in)
    for path, label in (shipped or {}).items():
        if not Path(path).is_file():
            found.problems.append(f"{path}: no such schema spec file (shipped with {label})")
            continue
        for doc in _read_spec_files([Path(path)], env, found.problems):
            files.append(Path(path))
            for kind, name, body in _objects(doc):
                if name in project:
                    continue
                if kind == "continuous_aggregates" and body["source"] in project:
                    found.set_aside.append(f"continuous aggregate {name} (shipped with {label}): its source table "
                                           f"{body['source']} is declared by the project's specs")
                    continue
                found.add(doc, kind, name, body, label)
    return found.spec(files)


def _read_spec_files(files: Iterable[Path], env: Mapping[str, str], problems: list[str]) -> Iterable[YamlDocument]:
    """Each file that reads and matches SPEC_SCHEMA (its `data` at least `{}`); problems of the others."""
    for path in files:
        try:
            doc = load_yaml(path, env)
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        doc.data = {} if doc.data is None else doc.data
        file_problems = schema_problems(doc, SPEC_SCHEMA, doc.data)
        problems.extend(file_problems)
        if not file_problems:
            yield doc


def _objects(doc: YamlDocument) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
    for kind in ("tables", "continuous_aggregates"):
        for name, body in doc.data.get(kind, {}).items():
            yield kind, name, body


@dataclass
class _Declarations:
    """The objects of the spec files read so far, where each is declared, and the problems found."""

    tables: dict[str, TableSpec] = field(default_factory=dict)
    caggs: dict[str, ContinuousAggregateSpec] = field(default_factory=dict)
    declared_in: dict[str, tuple[YamlDocument, tuple]] = field(default_factory=dict)
    shipped_by: dict[str, str] = field(default_factory=dict)
    set_aside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, doc: YamlDocument, kind: str, name: str, body: Mapping[str, Any], shipped_by: str | None = None):
        parts = (kind, name)
        if name in self.declared_in:
            first_doc, first_parts = self.declared_in[name]
            also = ""
            if shipped_by:  # two plugins ship a spec of one name; only the project can choose
                also = (f" (shipped with {self.shipped_by.get(name, 'the project')}); declare it in the project's "
                        "schema folder to choose one")
            self.problems.append(doc.problem(parts, f"{name!r} is already declared at "
                                                    f"{first_doc.where(first_parts)}{also}"))
            return
        self.declared_in[name] = (doc, parts)
        if shipped_by:
            self.shipped_by[name] = shipped_by
        if kind == "tables":
            self.tables[name] = _build_table(name, body, doc, parts)
        else:
            self.caggs[name] = _build_cagg(name, body, doc, parts)

    def spec(self, files: list[Path]) -> SchemaSpec:
        """The checked spec; ConfigError listing every problem in every file."""
        tables, caggs, problems = self.tables, self.caggs, self.problems
        for name, table in tables.items():
            doc, parts = self.declared_in[name]
            problems.extend(doc.problem(parts + tuple(p), m) for p, m in _check_table(table))
        for name, cagg in caggs.items():
            source = tables.get(cagg.source)
            if not cagg.time_column and source and source.hypertable:
                caggs[name] = cagg = replace(cagg, time_column=source.hypertable.time_column)
            doc, parts = self.declared_in[name]
            problems.extend(doc.problem(parts + tuple(p), m) for p, m in _check_cagg(cagg, tables))
        if problems:
            raise ConfigError(f"{len(problems)} problem(s) in schema specs: {problems[0]}", problems)
        return SchemaSpec(tables=tables, continuous_aggregates=caggs, files=tuple(str(f) for f in files),
                          shipped_by=dict(self.shipped_by), set_aside=tuple(self.set_aside))


def _spec_files(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise ConfigError(f"{path}: no schema spec files (*.yaml, *.yml) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such schema spec file or folder")
    return files


def _build_table(name: str, body: Mapping[str, Any], doc: YamlDocument, parts: tuple) -> TableSpec:
    columns = tuple(ColumnSpec(c["name"], canonical_type(c["type"]), c.get("nullable", True), c.get("default"),
                               description=c.get("description", ""), where=doc.where(parts + ("columns", i)))
                    for i, c in enumerate(body["columns"]))
    pk = body.get("primary_key")
    hyper = body.get("hypertable")
    return TableSpec(
        name=name,
        columns=columns,
        primary_key=ConstraintSpec(constraint_name(name, "pkey"), "primary key", tuple(pk)) if pk else None,
        unique=tuple(ConstraintSpec(constraint_name(name, *cols, "key"), "unique", tuple(cols))
                     for cols in body.get("unique", [])),
        indexes=tuple(_build_index(name, i) for i in body.get("indexes", [])),
        hypertable=_build_hypertable(hyper) if hyper else None,
        file=str(doc.path),
        description=body.get("description", ""),
        where=doc.where(parts),
    )


def _build_index(table: str, body: Mapping[str, Any]) -> IndexSpec:
    columns = tuple(parse_key_column(c) for c in body["columns"])
    name = body.get("name") or constraint_name(table, *(c.name for c in columns), "idx")
    return IndexSpec(name=name, columns=columns, unique=body.get("unique", False))


def _build_hypertable(body: Mapping[str, Any]) -> HypertableSpec:
    part = body.get("partitioning") or {}
    comp = body.get("compression")
    compression = None
    if comp is not None:
        compression = CompressionSpec(
            segment_by=tuple(comp.get("segment_by", ())),
            order_by=tuple(parse_key_column(c) for c in comp.get("order_by", ())),
            compress_after=comp.get("compress_after"),
        )
    return HypertableSpec(
        time_column=body["time_column"],
        chunk_time_interval=body["chunk_time_interval"],
        partition_column=part.get("column"),
        number_partitions=part.get("number_partitions"),
        compression=compression,
        drop_after=(body.get("retention") or {}).get("drop_after"),
    )


def _build_cagg(name: str, body: Mapping[str, Any], doc: YamlDocument, _parts: tuple) -> ContinuousAggregateSpec:
    refresh = body.get("refresh")
    return ContinuousAggregateSpec(
        name=name,
        source=body["source"],
        bucket_width=body["bucket_width"],
        time_column=body.get("time_column", ""),  # "" -> the source's time column, filled by the check
        bucket_column=body.get("bucket_column", "bucket"),
        group_by=tuple(body.get("group_by", ())),
        aggregates=tuple(a for item in body["aggregates"] for a in _expand_aggregate(item)),
        materialized_only=body.get("materialized_only", False),
        refresh=RefreshSpec(refresh["start_offset"], refresh["end_offset"],
                            refresh["schedule_interval"]) if refresh else None,
        drop_after=(body.get("retention") or {}).get("drop_after"),
        file=str(doc.path),
        description=body.get("description", ""),
    )


def _expand_aggregate(item: Mapping[str, Any]) -> list[AggregateSpec]:
    """`functions: [avg, max], columns: [a]` -> avg_a, max_a; `function: count` -> count(*)."""
    if "functions" in item or "columns" in item:
        return [AggregateSpec(f, c, f"{f}_{c}")
                for c in item.get("columns", ()) for f in item.get("functions", ())]
    function, column = item.get("function", ""), item.get("column")
    default_name = f"{function}_{column}" if column else function
    return [AggregateSpec(function, column, item.get("name") or default_name)]


# --- checks JSON Schema cannot express; each yields (key path, message) ----------------------

def _check_table(table: TableSpec):
    names = [c.name for c in table.columns]
    for i, name in enumerate(names):
        if name in names[:i]:
            yield ("columns", i, "name"), f"duplicate column {name!r}"
    known = set(names)

    def unknown(path, cols):
        for col in cols:
            if col not in known:
                yield path, f"unknown column {col!r} (columns: {', '.join(names)})"

    if table.primary_key:
        yield from unknown(("primary_key",), table.primary_key.columns)
    for i, key in enumerate(table.unique):
        yield from unknown(("unique", i), key.columns)
    for i, index in enumerate(table.indexes):
        yield from unknown(("indexes", i, "columns"), [c.name for c in index.columns])
    hyper = table.hypertable
    if hyper is None:
        return
    yield from unknown(("hypertable", "time_column"), [hyper.time_column])
    time_col = table.column(hyper.time_column)
    if time_col and time_col.type not in TIME_TYPES:
        yield (("hypertable", "time_column"),
               f"column {hyper.time_column!r} is {time_col.type}; a hypertable's time column must be "
               "timestamptz, timestamp or date")
    if time_col and time_col.nullable:
        yield ("hypertable", "time_column"), f"column {hyper.time_column!r} must be declared nullable: false"
    yield from _check_durations(("hypertable",), {"chunk_time_interval": hyper.chunk_time_interval})
    if hyper.partition_column:
        yield from unknown(("hypertable", "partitioning", "column"), [hyper.partition_column])
    required = [c for c in (hyper.time_column, hyper.partition_column) if c]
    keys = [(("primary_key",), table.primary_key)] if table.primary_key else []
    keys += [(("unique", i), key) for i, key in enumerate(table.unique)]
    keys += [(("indexes", i), ix) for i, ix in enumerate(table.indexes) if ix.unique]
    for path, key in keys:
        cols = [c if isinstance(c, str) else c.name for c in key.columns]
        missing = [c for c in required if c not in cols]
        if missing:
            yield path, (f"a unique key of a hypertable must include its partitioning column(s) "
                         f"{', '.join(missing)}")
    if hyper.compression:
        comp = hyper.compression
        yield from unknown(("hypertable", "compression", "segment_by"), comp.segment_by)
        yield from unknown(("hypertable", "compression", "order_by"), [c.name for c in comp.order_by])
        yield from _check_durations(("hypertable", "compression"), {"compress_after": comp.compress_after})
    yield from _check_durations(("hypertable", "retention"), {"drop_after": hyper.drop_after})


def _check_cagg(cagg: ContinuousAggregateSpec, tables: Mapping[str, TableSpec]):
    yield from _check_durations((), {"bucket_width": cagg.bucket_width})
    if cagg.refresh:
        yield from _check_durations(("refresh",), vars(cagg.refresh))
    yield from _check_durations(("retention",), {"drop_after": cagg.drop_after})
    source = tables.get(cagg.source)
    if source is None or source.hypertable is None:
        hypertables = sorted(n for n, t in tables.items() if t.hypertable)
        yield ("source",), (f"{cagg.source!r} is not a hypertable declared in the specs "
                            f"(hypertables: {', '.join(hypertables) or 'none'})")
        return
    known = {c.name for c in source.columns}
    for path, cols in ((("time_column",), [cagg.time_column]), (("group_by",), cagg.group_by)):
        for col in cols:
            if col not in known:
                yield path, f"unknown column {col!r} of {source.name}"
    for i, agg in enumerate(cagg.aggregates):
        if agg.column is None and agg.function != "count":
            yield ("aggregates", i), f"{agg.function} needs a column"
        elif agg.column is not None and agg.column not in known:
            yield ("aggregates", i), f"unknown column {agg.column!r} of {source.name}"
    names = cagg.column_names
    for i, name in enumerate(names):
        if name in names[:i]:
            yield ("aggregates",), f"output column {name!r} appears twice"
    yield from _check_refresh_window(cagg, source)


def _check_refresh_window(cagg: ContinuousAggregateSpec, source: TableSpec):
    refresh, bucket = cagg.refresh, parse_duration(cagg.bucket_width)
    if refresh is None or bucket is None:
        return
    start, end = parse_duration(refresh.start_offset), parse_duration(refresh.end_offset)
    if start is not None and start < (end or timedelta(0)) + 2 * bucket:
        yield (("refresh", "start_offset"),
               f"the refresh window (start_offset - end_offset) must cover at least two buckets "
               f"({cagg.bucket_width} each)")
    retention = parse_duration(source.hypertable.drop_after) if source.hypertable else None
    if retention is not None and (start is None or start > retention):
        yield (("refresh", "start_offset"),
               f"reaches beyond the retention window of {source.name} ({source.hypertable.drop_after}): "
               "refreshing a region whose raw data was dropped deletes its aggregated rows; "
               "use a start_offset smaller than drop_after")


def _check_durations(prefix: tuple, values: Mapping[str, str | None]):
    for key, value in values.items():
        if value is not None and parse_duration(value) is None:
            yield prefix + (key,), f"{value!r} is not a duration such as '1 hour' or '30 days'"


# --- small helpers shared with the planner -------------------------------------------------

_UNIT_SECONDS = {
    "microsecond": 1e-6, "us": 1e-6, "usec": 1e-6, "millisecond": 1e-3, "ms": 1e-3, "msec": 1e-3,
    "second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "hr": 3600,
    "h": 3600, "day": 86400, "d": 86400, "week": 604800, "w": 604800, "month": 2592000,
    "mon": 2592000, "year": 31557600, "yr": 31557600, "y": 31557600,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_CLOCK = re.compile(r"^\s*(\d+):(\d{2})(?::(\d{2}(?:\.\d+)?))?\s*$")


def parse_duration(text: str | None) -> timedelta | None:
    """'1 day 2 hours' or '01:30:00' -> timedelta; None if not a duration we understand.

    Months count as 30 days and years as 365.25 days, as PostgreSQL approximates them.
    """
    if text is None:
        return None
    text = text.strip().lower()
    clock = _CLOCK.match(text)
    if clock:
        return timedelta(hours=int(clock[1]), minutes=int(clock[2]), seconds=float(clock[3] or 0))
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        unit = match[2][:-1] if match[2].endswith("s") and match[2][:-1] in _UNIT_SECONDS else match[2]
        if unit not in _UNIT_SECONDS:
            return None
        total += float(match[1]) * _UNIT_SECONDS[unit]
        pos = match.end()
    if pos == 0 or pos != len(text):
        return None
    return timedelta(seconds=total)


def parse_key_column(text: str) -> KeyColumn:
    words = text.split()
    rest = " ".join(words[1:]).lower()
    nulls = None
    if "nulls first" in rest:
        nulls = True
    elif "nulls last" in rest:
        nulls = False
    return KeyColumn(words[0], descending=rest.startswith("desc"), nulls_first=nulls)


def constraint_name(*parts: str) -> str:
    """`table_col1_col2_suffix`, cut to 63 bytes as PostgreSQL would (keeping the suffix)."""
    *body, suffix = parts
    name = "_".join(body)
    room = MAX_IDENTIFIER_BYTES - len(suffix) - 1
    return f"{name[:room]}_{suffix}"


_TYPE_ALIASES = {
    "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone",
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint",
    "float8": "double precision", "float": "double precision", "float4": "real",
    "bool": "boolean", "varchar": "character varying", "char": "character",
    "decimal": "numeric",
}


def canonical_type(text: str) -> str:
    """A type as `format_type()` prints it, so that spec and live types compare equal."""
    text = " ".join(text.lower().split())
    array = text.endswith("[]")
    base = text[:-2].strip() if array else text
    match = re.match(r"^([a-z0-9_ ]+?)\s*(\(.*\))?$", base)
    name, modifier = (match[1], match[2] or "") if match else (base, "")
    name = _TYPE_ALIASES.get(name, name)
    modifier = modifier.replace(" ", "")
    if modifier and name.startswith(("timestamp", "time ")):
        # format_type puts the precision before "with(out) time zone"
        head, _, zone = name.partition(" with")
        name, modifier = f"{head}{modifier} with{zone}", ""
    return f"{name}{modifier}{'[]' if array else ''}"
