"""The tenant registry, checked inside a routed batch's write transaction (see pipeline/route.py).

`unregistered_tenants` is the transaction's first statement: it locks the
registry rows of the tenants the batch names (`FOR KEY SHARE`) until the
commit. `tenants remove` deletes the row, which that lock blocks, so a removal
waits for the writes in flight, and a write that starts after it committed
finds the tenant gone: its records become dead letters at stage `route`
(`route_dead_letters`) in that same transaction, and no row reaches a schema
that is unregistered or dropped. KEY SHARE is the weakest lock a DELETE
conflicts with: `tenants add` changing a retention (an UPDATE of a non-key
column) does not wait for writes. No tenant table is locked before the
registry rows, so the removal's DROP SCHEMA cannot deadlock with a write.

The rest are views of a batch for the writer: without some records, or each
partition cut before an offset (errors.tolerance none).
"""
from __future__ import annotations

from copy import copy as shallow_copy
from typing import Callable, Mapping, Sequence

from psycopg import sql

from sinkframe.pipeline.batch import Batch, DeadLetter
from sinkframe.pipeline.route import unknown_tenant_reason
from sinkframe.pipeline.write.deadletter import record_dead_letter
from sinkframe.tenants.registry import REGISTRY

REGISTERED_TENANTS = sql.SQL(
    "SELECT name FROM {} WHERE name = ANY(%s::text[]) ORDER BY name FOR KEY SHARE").format(REGISTRY)


def unregistered_tenants(cur, batch: Batch) -> set[str]:
    """The tenants `batch` names that the registry does not hold; the others' rows stay locked."""
    named = sorted({t for t in batch.tenants if t is not None})
    if not named:
        return set()
    cur.execute(REGISTERED_TENANTS, (named,))
    return set(named) - {name for (name,) in cur.fetchall()}


def route_dead_letters(batch: Batch, gone: set[str]) -> list[DeadLetter]:
    return [record_dead_letter(batch, i, "route", "UnknownTenant", unknown_tenant_reason(tenant))
            for i, tenant in enumerate(batch.tenants) if tenant in gone]


def first_per_partition(letters: Sequence[DeadLetter]) -> dict[int, DeadLetter]:
    first: dict[int, DeadLetter] = {}
    for letter in sorted(letters, key=lambda d: d.offset):
        first.setdefault(letter.partition, letter)
    return first


def keeping(batch: Batch, keep: Callable[[int], bool]) -> Batch:
    """A shallow copy of `batch` whose roles hold only the rows of records `keep` accepts."""
    view = shallow_copy(batch)
    view.roles = {}
    for role, columns in batch.roles.items():
        picked = [k for k, i in enumerate(columns.record_index) if keep(i)]
        if picked:
            view.roles[role] = columns if len(picked) == len(columns) else columns.take(picked)
    return view


def without_records(batch: Batch, letters: Sequence[DeadLetter]) -> Batch:
    left_out = {(d.partition, d.offset) for d in letters}
    return keeping(batch, lambda i: batch.origin(i) not in left_out)


def cut_before(batch: Batch, cut: Mapping[int, int]) -> Batch:
    """`batch` up to (not including) offset `cut[p]` of each partition p: its rows and its next offsets."""
    def kept(i: int) -> bool:
        partition, offset = batch.origin(i)
        return offset < cut.get(partition, offset + 1)

    view = keeping(batch, kept)
    view.next_offsets = {p: min(o, cut.get(p, o)) for p, o in batch.next_offsets.items()
                         if cut.get(p, o) > batch.first_offsets[p]}
    return view
