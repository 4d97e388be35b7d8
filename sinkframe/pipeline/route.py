"""Stage `route`: which tenant's tables a record's rows go to (a connector's `tenant:` block).

A tenant is named by a field of the message (`tenant: {field: tenant_id}`) or by
the start of the Kafka key (`tenant: {key_prefix: ":"}` for keys like
`acme:dev-1`). A record naming no tenant, or a name that can never be a tenant
(not `[a-z][a-z0-9_]{0,40}`), is a dead letter at stage `route` here.

Whether a named tenant is registered (`sinkframe tenants add`) is decided by
the writer, inside the batch's own transaction (pipeline/write/writer.py): it locks
the registry rows of the batch's tenants (`FOR KEY SHARE`, which `tenants
remove` must wait for), writes the rows of those it found, and turns the
records of the others into dead letters at stage `route`. So the consumer
thread never reads the database to route, a registry read that fails while
the database is down is retried like any write, and a tenant is routed to from
the moment its `add` commits and no longer from the moment its `remove`
commits. A value from a message is only ever compared with registered names;
the schema a row is written to comes from the name by the registry's own rule
(`tenant_NAME`), for a name the registry holds.

The rows of tenant T for role R travel in the batch under the role key
`T/R`, so the writer, its poison isolation and the batch's one transaction
work on them as on any role: a batch that spans tenants still commits once.
"""
from __future__ import annotations

from typing import NamedTuple

import orjson

from sinkframe.mapping.batch import MappedBatch, RecordBatch, Rejection
from sinkframe.tenants.registry import is_tenant_name

SEPARATOR = "/"  # between tenant and role in a role key; neither a tenant name nor a role holds it


def tenant_role(tenant: str, role: str) -> str:
    return f"{tenant}{SEPARATOR}{role}"


def split_role(key: str) -> tuple[str | None, str]:
    """(tenant, role) of a role key; (None, role) for a connector without tenants."""
    tenant, sep, role = key.rpartition(SEPARATOR)
    return (tenant, role) if sep else (None, key)


def unknown_tenant_reason(tenant: str) -> str:
    return f"unknown tenant {tenant[:80]!r} (not registered: sinkframe tenants add)"


class Routed(NamedTuple):
    """A chunk's rows under tenant role keys, and the tenant of each record (None: rejected, no tenant)."""

    mapped: MappedBatch
    tenants: list[str | None]


class TenantRouter:
    """Keeps nothing between calls, so the consumer and writer threads share no state through it."""

    def __init__(self, *, field: str | None = None, key_prefix: str | None = None):
        if (field is None) == (key_prefix is None):
            raise ValueError("a tenant router takes exactly one of field and key_prefix")
        self.field = field
        self.key_prefix = key_prefix

    def route(self, chunk: RecordBatch, mapped: MappedBatch) -> Routed:
        """`mapped` with each role's rows under tenant role keys, and a rejection per unroutable record."""
        tenants = self._tenants_of(chunk)
        rejected_already = {r.index for r in mapped.rejected}
        rejected = list(mapped.rejected)
        for index, tenant in enumerate(tenants):
            if index in rejected_already:
                tenants[index] = None
            elif tenant is None or not is_tenant_name(tenant):
                tenants[index] = None
                reason = (f"no tenant: {self._source()} is missing or not a string" if tenant is None
                          else unknown_tenant_reason(tenant))
                rejected.append(Rejection(index, "route", "UnknownTenant" if tenant else "MissingTenant", reason))
        rejected.sort(key=lambda r: r.index)
        roles = {}
        for role, columns in mapped.roles.items():
            positions: dict[str, list[int]] = {}
            for k, index in enumerate(columns.record_index):
                tenant = tenants[index]
                if tenant is not None:
                    positions.setdefault(tenant, []).append(k)
            for tenant, picked in positions.items():
                roles[tenant_role(tenant, role)] = columns.take(picked)
        return Routed(MappedBatch(roles, rejected), tenants)

    def _source(self) -> str:
        return f"message field {self.field!r}" if self.field else f"key prefix (before {self.key_prefix!r})"

    def _tenants_of(self, chunk: RecordBatch) -> list[str | None]:
        if self.key_prefix is not None:
            sep = self.key_prefix.encode()
            return [_text(key.partition(sep)[0]) if key and sep in key else None for key in chunk.keys]
        field = self.field
        out: list[str | None] = []
        for value in chunk.values:
            try:
                message = orjson.loads(value) if value is not None else None
            except orjson.JSONDecodeError:
                message = None  # the mapper rejects it at stage decode
            tenant = message.get(field) if type(message) is dict else None
            out.append(tenant if type(tenant) is str else None)
        return out


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
