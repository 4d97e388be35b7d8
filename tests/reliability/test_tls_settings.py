"""TLS and SASL settings pass through: libpq sslmode/sslrootcert and librdkafka security.*.

The database side runs against a real TLS-enabled PostgreSQL (a certificate made
here); the Kafka side checks the properties reach real librdkafka clients (the
test broker has no TLS listener).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from sinkframe.config.connector import load_connector
from sinkframe.config.settings import Settings
from sinkframe.devservices import produce
from sinkframe.errors import SinkframeError
from sinkframe.pipeline.runner import check_database
from sinkframe.pipeline.task import consumer_properties
from sinkframe.pipeline.write.deadletter import producer_properties

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(crt)], check=True, capture_output=True)
    return crt, key


@pytest.fixture
def tls_pg(tmp_path):
    skip_without_server_binaries()
    crt, key = self_signed(tmp_path, "server")
    with PrivatePostgres(ssl_files=(crt, key)) as server:
        yield server, crt


def test_libpq_sslmode_and_sslrootcert_from_the_environment_reach_every_connection(
        tls_pg, kafka_bootstrap, new_topic, tmp_path):
    server, ca = tls_pg
    base = server.dsn()
    create_tables(base)
    env = sink_env(kafka_bootstrap, base, SINKFRAME_DB_SSLMODE="verify-full", SINKFRAME_DB_SSLROOTCERT=str(ca))
    settings = Settings.from_env(env)
    check_database(settings)  # verifies the server certificate against our CA and the host name
    with psycopg.connect(settings.dsn) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)

    topic = new_topic()
    produce(kafka_bootstrap, topic, [{"device_id": "tls", "payload": i} for i in range(20)])
    sink = InProcessSink([write_connector(tmp_path, name="tls", topic=topic)], env).start()
    try:
        wait_for(lambda: row_counts(base)[0] == 20, timeout=30, message="rows over TLS")
        # Every connection of the sink's pool is encrypted.
        assert query(base, "SELECT bool_and(s.ssl), count(*) FROM pg_stat_activity a "
                           "JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'sinkframe'") == [(True, 1)]
    finally:
        sink.stop()
        sink.join(30)

    other_ca, _ = self_signed(tmp_path, "other")
    wrong = Settings.from_env({**env, "SINKFRAME_DB_SSLROOTCERT": str(other_ca)})
    with pytest.raises(SinkframeError, match="certificate verify failed"):
        check_database(wrong)


def test_kafka_tls_and_sasl_settings_from_the_environment_reach_consumer_and_dead_letter_producer(tmp_path):
    ca, _ = self_signed(tmp_path, "kafka-ca")
    env = {
        "REDPANDA_BROKERS": "broker-1.example:9093",
        "SINKFRAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SINKFRAME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SINKFRAME_KAFKA_SASL_USERNAME": "sinkframe",
        "SINKFRAME_KAFKA_SASL_PASSWORD": "s3cret",
        "SINKFRAME_KAFKA_SSL_CA_LOCATION": str(ca),
        "SINKFRAME_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "https",
    }
    connector_file = write_connector(tmp_path, name="secure", topic="t", extra=(
        "  dead_letter:\n    topic: t.dlq\nconsumer:\n  properties:\n    sasl.username: per-connector\n"))
    connector = load_connector(connector_file)
    consumer = consumer_properties(Settings.from_env(env).kafka, connector)
    expected = {"bootstrap.servers": "broker-1.example:9093", "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "per-connector", "sasl.password": "s3cret",
                "ssl.ca.location": str(ca), "ssl.endpoint.identification.algorithm": "https"}
    assert expected.items() <= consumer.items()
    producer = producer_properties(consumer, connector.name)
    assert expected.items() <= producer.items()
    assert "group.id" not in producer and "session.timeout.ms" not in producer
    # Real librdkafka clients accept them (property names, values, the CA file).
    Consumer(consumer).close()
    Producer(producer).flush(0)
