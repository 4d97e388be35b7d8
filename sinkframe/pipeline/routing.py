"""Stage `route`: which tenant's tables a record's rows go to (a connector's `tenant:` block).

A tenant is named by a field of the message (`tenant: {field: tenant_id}`) or by
the start of the Kafka key (`tenant: {key_prefix: ":"}` for keys like
`acme:dev-1`). Only tenants in the registry (`sinkframe tenants add`) are
routed to: a record naming no tenant, or one that is not registered, is a dead
letter at stage `route` that names the tenant it asked for. A value from a
message is only ever compared with registered names; the schema a row is
written to comes from the registry, never from the message.

The rows of tenant T for role R travel in the batch under the role key
`T/R`, so the writer, its poison isolation and the batch's one transaction
work on them as on any role: a batch that spans tenants still commits once.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

import orjson

from sinkframe.mapping.batch import MappedBatch, RecordBatch, Rejection

log = logging.getLogger(__name__)

SEPARATOR = "/"  # between tenant and role in a role key; neither a tenant name nor a role holds it
REFRESH_SECONDS = 5.0  # an unknown tenant re-reads the registry at most this often
# ...and it is re-read this often anyway, so that a removed tenant stops being routed to.
PERIODIC_REFRESH_SECONDS = 30.0


def tenant_role(tenant: str, role: str) -> str:
    return f"{tenant}{SEPARATOR}{role}"


def split_role(key: str) -> tuple[str | None, str]:
    """(tenant, role) of a role key; (None, role) for a connector without tenants."""
    tenant, sep, role = key.rpartition(SEPARATOR)
    return (tenant, role) if sep else (None, key)


class TenantRouter:
    def __init__(self, *, field: str | None = None, key_prefix: str | None = None,
                 load: Callable[[], Mapping[str, str]]):
        if (field is None) == (key_prefix is None):
            raise ValueError("a tenant router takes exactly one of field and key_prefix")
        self.field = field
        self.key_prefix = key_prefix
        self._load = load
        self.schemas: dict[str, str] = {}  # tenant -> schema, from the registry
        self._loaded_at = float("-inf")

    def refresh(self) -> None:
        # In place: the writer thread reads the same dict (a key is only ever added
        # before rows of that tenant reach it, or removed with the tenant).
        loaded = dict(self._load())
        self.schemas.update(loaded)
        for gone in set(self.schemas) - set(loaded):
            del self.schemas[gone]
        self._loaded_at = time.monotonic()

    def route(self, chunk: RecordBatch, mapped: MappedBatch) -> MappedBatch:
        """`mapped` with each role's rows under tenant role keys, and a rejection per unroutable record."""
        tenants = self._tenants_of(chunk)
        asked = {t for t in tenants if t is not None and t not in self.schemas}
        age = time.monotonic() - self._loaded_at
        if (asked and age >= REFRESH_SECONDS) or age >= PERIODIC_REFRESH_SECONDS:
            self.refresh()  # a tenant added (or removed) while running is seen without a restart
        rejected_already = {r.index for r in mapped.rejected}
        rejected = list(mapped.rejected)
        for index, tenant in enumerate(tenants):
            if index in rejected_already or tenant in self.schemas:
                continue
            reason = (f"no tenant: {self._source()} is missing or not a string" if tenant is None
                      else f"unknown tenant {tenant[:80]!r} (not registered: sinkframe tenants add)")
            rejected.append(Rejection(index, "route", "UnknownTenant" if tenant else "MissingTenant", reason))
        rejected.sort(key=lambda r: r.index)
        roles = {}
        for role, columns in mapped.roles.items():
            positions: dict[str, list[int]] = {}
            for k, index in enumerate(columns.record_index):
                tenant = tenants[index]
                if tenant in self.schemas:
                    positions.setdefault(tenant, []).append(k)
            for tenant, picked in positions.items():
                roles[tenant_role(tenant, role)] = columns.take(picked)
        return MappedBatch(roles, rejected)

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
