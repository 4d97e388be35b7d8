"""Stage `route`: rows to their tenant's role key; no tenant or an unknown one is a dead letter."""
from __future__ import annotations

import json

from confluent_kafka import Message

from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.route import TenantRouter, split_role

def builder(router: TenantRouter) -> BatchBuilder:
    return BatchBuilder("t", PluginRegistry().get("raw")({}), positions=PartitionPositions("c", "t"), router=router)


def message(offset: int, key: bytes | None, value: dict) -> Message:
    return Message(topic="t", partition=0, offset=offset, key=key, value=json.dumps(value).encode(),
                   timestamp=(1, 1_700_000_000_000))


def test_key_prefix_routes_rows_to_tenant_roles_and_dead_letters_what_names_no_tenant():
    b = builder(TenantRouter(key_prefix=":"))
    keys = [b"acme:dev-1", b"globex:dev-2", b"acme:dev-3", b"nobody:dev-4", None, b"no-separator", b"Bad-Name:d"]
    b.add([message(i, key, {"device_id": f"dev-{i}", "payload": {"i": i}}) for i, key in enumerate(keys)])
    batch = b.take()

    # Whether acme, globex or nobody is registered is the writer's question, in the write transaction.
    assert set(batch.roles) == {"acme/raw", "globex/raw", "nobody/raw"}
    offsets = {role: [batch.origin(i)[1] for i in c.record_index] for role, c in batch.roles.items()}
    assert offsets == {"acme/raw": [0, 2], "globex/raw": [1], "nobody/raw": [3]}
    assert batch.tenants == ["acme", "globex", "acme", "nobody", None, None, None]
    letters = {d.offset: (d.stage, d.error_class, d.error_message) for d in batch.dead_letters}
    assert letters[4][:2] == letters[5][:2] == ("route", "MissingTenant")
    assert letters[6][:2] == ("route", "UnknownTenant") and "'Bad-Name'" in letters[6][2]  # never a tenant name
    assert set(letters) == {4, 5, 6}
    assert batch.next_offsets == {0: 7}  # every record is accounted for: rows or a dead letter


def test_field_routing_and_a_hostile_tenant_value_is_only_compared_never_used():
    b = builder(TenantRouter(field="tenant_id"))
    values = [{"tenant_id": "globex", "device_id": "d1"},
              {"tenant_id": "acme\"; DROP TABLE x; --", "device_id": "d2"},
              {"tenant_id": 7, "device_id": "d3"},
              {"device_id": "d4"}]
    b.add([message(i, None, v) for i, v in enumerate(values)])
    batch = b.take()
    assert list(batch.roles) == ["globex/raw"]
    assert [d.stage for d in batch.dead_letters] == ["route"] * 3
    assert "DROP TABLE" in batch.dead_letters[0].error_message  # named in the dead letter, not executed
    assert batch.tenants == ["globex", None, None, None]


def test_a_record_the_mapper_rejects_names_no_tenant_for_the_writer():
    b = builder(TenantRouter(key_prefix=":"))
    b.add([Message(topic="t", partition=0, offset=0, key=b"acme:d", value=b"{not json",
                   timestamp=(1, 1_700_000_000_000))])
    batch = b.take()
    assert batch.tenants == [None] and [d.stage for d in batch.dead_letters] == ["decode"]


def test_split_role():
    assert split_role("acme/measurements") == ("acme", "measurements")
    assert split_role("measurements") == (None, "measurements")


def test_validate_checks_the_tenant_block(tmp_path):
    from click.testing import CliRunner

    from sinkframe.cli import cli

    from sinktest.paths import REPO

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    base = "name: {name}\ntopic: t\nmapper: {{plugin: raw}}\nerrors: {{tolerance: all}}\n"
    good.write_text(base.format(name="good") + 'tenant: {key_prefix: ":"}\n')
    bad.write_text(base.format(name="bad") + 'tenant: {field: tenant_id, key_prefix: ":"}\n')
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", "--schema-dir", str(REPO / "schema"), str(good)])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(cli, ["validate", "--schema-dir", str(REPO / "schema"), str(bad)])
    assert refused.exit_code == 1 and "$.tenant: give exactly one of `field`" in refused.output
