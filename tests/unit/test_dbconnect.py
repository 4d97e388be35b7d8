"""Which connection failures at start are waited out and which fail at once (pure: the messages)."""
from __future__ import annotations

import psycopg
import pytest

from sinkframe.pipeline.write.dbconnect import refusal, retry_delay


@pytest.mark.parametrize("message, kind", [
    ('connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for '
     'user "writer"', "authentication failed"),
    ('connection to server at "db", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9", user '
     '"writer", database "iot", no encryption', "authentication failed"),
    ('connection to server at "db", port 5432 failed: FATAL:  role "nobody" does not exist',
     "authentication failed"),
    ('connection to server at "db", port 5432 failed: FATAL:  database "iot_data" does not exist',
     "no such database"),
    ('connection to server at "db", port 5432 failed: SSL error: certificate verify failed',
     "the server's certificate is refused"),
    ('connection to server at "db", port 5432 failed: Connection refused\n\tIs the server running on that host '
     'and accepting TCP/IP connections?', None),
    ("connection timeout expired", None),
    ('connection to server at "db", port 5432 failed: FATAL:  the database system is starting up', None),
    ('connection to server at "db", port 5432 failed: FATAL:  sorry, too many clients already', None),
    ('connection to server at "db", port 5432 failed: server closed the connection unexpectedly', None),
])
def test_refusals_fail_fast_and_the_rest_is_waited_for(message, kind):
    assert refusal(psycopg.OperationalError(message)) == kind


def test_the_wait_between_attempts_doubles_up_to_a_bound():
    assert [retry_delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 15, 15]

