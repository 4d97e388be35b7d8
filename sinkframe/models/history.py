"""A model's rows from the table the connector writes, read with COPY ... TO STDOUT (binary).

History is read per key in time order: the order the stream scores a key's rows
in, less the late messages (which scoring skips anyway).
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from psycopg import sql

from sinkframe.models.detector import Rows
from sinkframe.models.spec import ModelSpec


def read_rows(conn, table: sql.Composable, model: ModelSpec, *, since: datetime, until: datetime | None = None,
              keys: list[str] | None = None) -> Rows:
    """The model's rows of `table` with time in [since, until), keys (as text) in key then time order."""
    time = sql.Identifier(model.time_column)
    # COPY takes no server-side parameters: psycopg binds these on the client, quoted as values.
    conditions, params = [sql.SQL("{} >= %s").format(time)], [since]
    if until is not None:
        conditions.append(sql.SQL("{} < %s").format(time))
        params.append(until)
    if keys is not None:
        conditions.append(sql.SQL("{}::text = ANY(%s::text[])").format(sql.Identifier(model.key)))
        params.append(keys)
    query = sql.SQL("COPY (SELECT {key}::text, extract(epoch FROM {time})::float8, {features} FROM {table} "
                    "WHERE {where} ORDER BY 1, 2) TO STDOUT (FORMAT BINARY)").format(
        key=sql.Identifier(model.key), time=time, table=table,
        features=sql.SQL(", ").join(sql.SQL("{}::float8").format(sql.Identifier(f)) for f in model.features),
        where=sql.SQL(" AND ").join(conditions))
    key_values, numbers = [], []
    with conn.cursor() as cur, cur.copy(query, params) as copy:
        copy.set_types(["text", "float8", *["float8"] * len(model.features)])
        for row in copy.rows():
            key_values.append(row[0])
            numbers.append(row[1:])
    values = np.array(numbers, dtype=float).reshape(len(numbers), 1 + len(model.features))
    return Rows(key_values, values[:, 0], values[:, 1], values[:, 2:])
