"""Passwords never appear in logs, error messages or `sinkframe validate` output."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from sinkframe.cli import cli
from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, row_counts
from sinktest.paths import REPO
from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

PASSWORD = "Tr0ub4dor-xyzzy-31337"
NEW_PASSWORD = "Correct-Horse-Battery-9431"
WRONG = "wr0ng-Pa55word-quux"


@pytest.fixture
def secured_pg():
    skip_without_server_binaries()
    with PrivatePostgres(password=PASSWORD) as server:
        yield server


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked:\n{text[-3000:]}"
        assert secret[4:-4] not in text  # not even partly (e.g. escaped or cut)


@pytest.mark.parametrize("form", ["url-on-command-line", "keywords-in-env"])
def test_a_wrong_database_password_is_reported_without_the_password(secured_pg, kafka_bootstrap, tmp_path, form):
    connector = write_connector(tmp_path, name="secret", topic="secret.topic")
    args = [sys.executable, "-m", "sinkframe.cli", "run", str(connector)]
    if form == "url-on-command-line":
        env = sink_env(kafka_bootstrap, "dbname=unused")
        args += ["--database-url", f"postgresql://postgres:{WRONG}@127.0.0.1:{secured_pg.port}/postgres"]
    else:
        env = sink_env(kafka_bootstrap, secured_pg.dsn(password=WRONG))
    started = time.monotonic()
    result = subprocess.run(args, env={**env, "PATH": "/usr/bin:/bin"}, cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    # A refusal is not an outage: no waiting for the database, no retries.
    assert time.monotonic() - started < 20
    assert "waiting for the database" not in result.stderr
    assert result.returncode == 1, result.stderr
    assert "authentication failed: " in result.stderr and "password authentication failed" in result.stderr
    assert "password=***" in result.stderr  # the DSN is shown, redacted
    assert_no_secret(result.stdout + result.stderr, WRONG)


def test_a_missing_database_fails_fast_with_the_servers_words(pg_dsn, kafka_bootstrap, tmp_path):
    missing = make_conninfo(pg_dsn, dbname="no_such_database_here")
    connector = write_connector(tmp_path, name="nodb", topic="nodb.topic")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sinkframe.cli", "run", str(connector)],
                            env=sink_env(kafka_bootstrap, missing), cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stderr
    assert "no such database: " in result.stderr and '"no_such_database_here" does not exist' in result.stderr
    assert "waiting for the database" not in result.stderr


@pytest.mark.slow
def test_a_password_rotated_under_a_running_sink_never_shows_in_its_logs(secured_pg, kafka_bootstrap,
                                                                          new_topic, tmp_path):
    dsn = secured_pg.dsn()
    create_tables(dsn)
    topic = new_topic()
    produce(kafka_bootstrap, topic, [{"device_id": "d", "payload": i} for i in range(100)])
    connector = write_connector(tmp_path, name="rotated", topic=topic, max_rows=50, max_wait_ms=50)
    log = tmp_path / "sink.log"
    sink = start_sink_process([connector], sink_env(kafka_bootstrap, dsn), log, log_level="DEBUG")
    try:
        wait_for(lambda: row_counts(dsn)[0] == 100, timeout=30, message="the first rows")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(psycopg.sql.Literal(NEW_PASSWORD)))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'sinkframe'")
        produce(kafka_bootstrap, topic, [{"device_id": "d", "payload": i} for i in range(100, 200)])
        wait_for(lambda: "password authentication failed" in log.read_text(), timeout=30,
                 message="the sink to meet the new password")
        wait_for(lambda: "will retry" in log.read_text(), timeout=30, message="a retried write")
    finally:
        sink.send_signal(signal.SIGTERM)
        code = sink.wait(30)
    assert code == 0
    assert_no_secret(log.read_text(), PASSWORD, NEW_PASSWORD)


def test_validate_never_prints_secrets_from_connector_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_PASSWORD", PASSWORD)
    monkeypatch.setenv("SSL_KEY_PASSWORD", NEW_PASSWORD)
    good = tmp_path / "good.yaml"
    good.write_text("name: good\ntopic: t\nmapper:\n  plugin: raw\nconsumer:\n  properties:\n"
                    "    security.protocol: SASL_SSL\n    sasl.mechanism: SCRAM-SHA-512\n"
                    "    sasl.username: sink\n    sasl.password: ${KAFKA_PASSWORD}\n")
    # Wrong types: a schema error would normally quote the value.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntopic: t\nmapper:\n  plugin: raw\nconsumer:\n  properties:\n"
                   "    sasl.password: [\"${KAFKA_PASSWORD}\"]\n    ssl.key.password: {pw: '${SSL_KEY_PASSWORD}'}\n")
    runner = CliRunner()
    for output in ("text", "json"):
        result = runner.invoke(cli, ["validate", "-o", output, "--schema-dir", str(REPO / "schema"),
                                     str(good), str(bad)])
        assert result.exit_code == 1
        assert_no_secret(result.output, PASSWORD, NEW_PASSWORD)
        assert "sasl.password: invalid value (not shown)" in result.output
        if output == "json":
            report = json.loads(result.output)
            assert [bool(f["errors"]) for f in report["files"]] == [False, True]
