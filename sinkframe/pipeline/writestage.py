"""The writing stage of a connector: a thread of its own with at most one batch in flight.

This is the part of Kafka Connect's SinkTask that `put`s records and says what
is durable: `open()` starts it, `put(batch, expected)` hands it a batch,
`wait()` returns the `Completion` of the batch in flight (written, fenced,
abandoned or failed), `abandon()` makes a batch that is waiting for the
database give up, `close()` stops it.

Why a thread: while PostgreSQL ingests batch N (and the thread waits for it
with the GIL released), the consumer thread fetches, decodes and maps batch
N+1. Exactly once is kept by what the consumer thread does with completions,
not by this thread: batches are written one at a time and in order, and the
consumer thread applies each completion (positions, Kafka commit, rewind)
before it hands over the next batch, so a connector holds at most two batches:
the one in flight and the one being built.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from sinkframe.errors import PartitionFenced, RetriableWriteError
from sinkframe.pipeline.batch import Batch
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.pipeline.writer import BatchWriter, WriteOutcome

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0  # the database is retried at least this often while it is down


def backoff_seconds(attempt: int) -> float:
    """Wait before retry `attempt` (1, 2, ...) against an unavailable database: 0.5 s doubling."""
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


@dataclass
class Completion:
    """How the write of one batch ended. Exactly one of outcome / fenced / abandoned / error holds."""

    batch: Batch
    seconds: float
    outcome: WriteOutcome | None = None
    fenced: PartitionFenced | None = None
    abandoned: bool = False  # gave up waiting for the database (stop, revocation): nothing written
    error: BaseException | None = None  # anything else: the connector must stop


class WriteStage:
    def __init__(self, writer: BatchWriter, stats: ConnectorStats, *, tolerate: bool,
                 before_commit: Callable | None = None):
        self.writer = writer
        self.stats = stats
        self.tolerate = tolerate
        self.before_commit = before_commit
        self.retrying = False  # the batch in flight is waiting for the database
        self._cond = threading.Condition()
        self._in_flight: tuple[Batch, Mapping[int, int | None]] | None = None
        self._done: Completion | None = None
        self._abandon = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"writer-{writer.connector}", daemon=True)

    # -- the consumer thread's side ---------------------------------------------------
    def open(self) -> None:
        self._thread.start()

    def busy(self) -> bool:
        """A batch was handed over whose completion has not been collected by `wait()`."""
        with self._cond:
            return self._in_flight is not None or self._done is not None

    def in_flight_messages(self) -> int:
        with self._cond:
            return self._in_flight[0].messages if self._in_flight is not None else 0

    def put(self, batch: Batch, expected: Mapping[int, int | None]) -> None:
        """Write `batch`, whose partitions the database holds at `expected` now."""
        with self._cond:
            if self._in_flight is not None or self._done is not None:
                raise RuntimeError("a batch is in flight: collect its completion with wait() first")
            self._in_flight, self._abandon = (batch, dict(expected)), False
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> Completion | None:
        """The completion of the batch in flight, once it has one (None: not within `timeout`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done is not None or self._in_flight is None, timeout):
                return None
            done, self._done = self._done, None
            return done

    def abandon(self) -> None:
        """Make a batch that waits for the database give up (it completes as abandoned)."""
        with self._cond:
            if self._in_flight is not None:
                self._abandon = True
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._abandon = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    # -- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._in_flight is not None or self._closed)
                if self._in_flight is None:
                    return
                batch, expected = self._in_flight
            completion = self._write(batch, expected)
            with self._cond:
                self._in_flight, self._done = None, completion
                self._cond.notify_all()

    def _write(self, batch: Batch, expected: Mapping[int, int | None]) -> Completion:
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    outcome = self.writer.write(batch, expected, tolerate=self.tolerate,
                                                before_commit=self.before_commit)
                    return Completion(batch, time.monotonic() - started, outcome=outcome)
                except RetriableWriteError as err:
                    attempt += 1
                    if not self._back_off(err, attempt):
                        return Completion(batch, time.monotonic() - started, abandoned=True)
                except PartitionFenced as err:
                    return Completion(batch, time.monotonic() - started, fenced=err)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread, which stops
            return Completion(batch, time.monotonic() - started, error=err)
        finally:
            self.retrying = False

    def _back_off(self, err: RetriableWriteError, attempt: int) -> bool:
        """Wait before the next attempt; False when the batch is to be abandoned instead."""
        delay = backoff_seconds(attempt)
        self.stats.write_retries += 1
        self.retrying = True  # the consumer thread pauses and shows waiting-for-database
        log.warning("%s (attempt %d, next in %.1fs)", err, attempt, delay)
        with self._cond:
            return not self._cond.wait_for(lambda: self._abandon, delay)
