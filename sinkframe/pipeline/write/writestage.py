"""The database stage of a connector: a thread of its own with at most one job in flight.

This is the part of Kafka Connect's SinkTask that `put`s records and says what
is durable, plus every other database read the consumer thread needs, so that
the consumer thread itself never waits on the database:

- `put(batch, expected)` writes a batch (rows, dead letters, offsets: one
  transaction);
- `load_offsets()` reads the offsets the database holds (after an assignment,
  a fence, or an abandoned write);
- `wait()` returns the `Completion` of the job in flight;
- `abandon()` gives the job in flight up: it stops retrying, and (`interrupt`)
  its connection is shut; the consumer thread never applies its outcome;
- `close()` stops the thread.

Why a thread: while PostgreSQL ingests batch N (and the thread waits for it
with the GIL released), the consumer thread fetches, decodes and maps batch
N+1. Exactly once is kept by what the consumer thread does with completions,
not by this thread: jobs run one at a time and in order, and the consumer thread
applies each completion (positions, Kafka commit, rewind) before it hands over
the next batch, so a connector holds at most two batches: the one in flight and
the one being built. Because a load runs on this thread too, it always runs
after the write before it has ended: what it reads is what that write left.

Every attempt of a job is bounded (`write_timeout`): a watchdog timer shuts the
attempt's connection down if it takes longer (a connection that stopped
answering without a reset waits for ever otherwise), and the job is retried as
after any connection failure.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from sinkframe.errors import PartitionFenced, RetriableWriteError
from sinkframe.pipeline.batch import Batch
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.pipeline.write.writer import BatchWriter, WriteOutcome

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0  # the database is retried at least this often while it is down


def backoff_seconds(attempt: int) -> float:
    """Wait before retry `attempt` (1, 2, ...) against an unavailable database: 0.5 s doubling."""
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


@dataclass
class _Job:
    """A write (`batch` set) or a load of the stored offsets (`batch` None)."""

    batch: Batch | None
    expected: Mapping[int, int | None] = field(default_factory=dict)
    given_up: bool = False  # abandoned by the consumer thread; it will not apply the outcome
    interrupt: bool = False  # ... and its connection is to be shut now (stop)


@dataclass
class Completion:
    """How one job ended. Exactly one of outcome / stored / fenced / abandoned / error holds.

    `late`: the consumer thread gave the job up before it ended (revocation, stop).
    The job may still have ended with an outcome (its transaction committed after
    all); the consumer thread counts it but applies nothing of it, and reads the
    stored offsets again instead.
    """

    batch: Batch | None
    seconds: float
    outcome: WriteOutcome | None = None
    stored: dict[int, int] | None = None  # a load: partition -> next offset the database holds
    fenced: PartitionFenced | None = None
    abandoned: bool = False  # gave up (stop, revocation) before anything was written
    error: BaseException | None = None  # anything else: the connector must stop
    late: bool = False

    @property
    def is_load(self) -> bool:
        return self.batch is None


class WriteStage:
    def __init__(self, writer: BatchWriter, stats: ConnectorStats, *, tolerate: bool,
                 before_commit: Callable | None = None):
        self.writer = writer
        self.stats = stats
        self.tolerate = tolerate
        self.before_commit = before_commit
        self.write_timeout = writer.write_timeout
        self.retrying = False  # the job in flight is waiting for the database
        self._cond = threading.Condition()
        self._in_flight: _Job | None = None
        self._done: Completion | None = None
        self._closed = False
        self._attempt = 0  # counts attempts, so that a late watchdog cannot shut a later attempt's connection
        self._thread = threading.Thread(target=self._run, name=f"writer-{writer.connector}", daemon=True)

    # -- the consumer thread's side ---------------------------------------------------
    def open(self) -> None:
        self._thread.start()

    def busy(self) -> bool:
        """A job was handed over whose completion has not been collected by `wait()`."""
        with self._cond:
            return self._in_flight is not None or self._done is not None

    def writing(self) -> bool:
        """A write is in flight that the consumer thread has not given up."""
        with self._cond:
            job = self._in_flight
            return job is not None and job.batch is not None and not job.given_up

    def in_flight_messages(self) -> int:
        with self._cond:
            job = self._in_flight
            return job.batch.message_count if job is not None and job.batch is not None and not job.given_up else 0

    def put(self, batch: Batch, expected: Mapping[int, int | None]) -> None:
        """Write `batch`, whose partitions the database holds at `expected` now."""
        self._start(_Job(batch, dict(expected)))

    def load_offsets(self) -> None:
        """Read the offsets the database holds for the connector's group and topic."""
        self._start(_Job(None))

    def _start(self, job: _Job) -> None:
        with self._cond:
            if self._in_flight is not None or self._done is not None:
                raise RuntimeError("a job is in flight: collect its completion with wait() first")
            self._in_flight = job
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> Completion | None:
        """The completion of the job in flight, once it has one (None: not within `timeout`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done is not None or self._in_flight is None, timeout):
                return None
            done, self._done = self._done, None
            return done

    def abandon(self, *, interrupt: bool = False) -> bool:
        """Give the job in flight up: no more retries, its completion comes back `late`.

        `interrupt`: also shut its connection now, so that an attempt blocked on
        the database ends at once (the transaction does not commit, unless its
        COMMIT already reached the server: the consumer re-reads the offsets).
        True if this gave up (or interrupted) a job that was not already.
        """
        with self._cond:
            job = self._in_flight
            if job is None or job.given_up and (job.interrupt or not interrupt):
                return False
            job.given_up = True
            job.interrupt = job.interrupt or interrupt
            self._cond.notify_all()
        if interrupt:
            self.writer.give_up_connection("the connector is stopping")
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Stop the thread (giving up what is in flight); False if it did not end within `timeout`."""
        with self._cond:
            self._closed = True
            if self._in_flight is not None:
                self._in_flight.given_up = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._in_flight is not None or self._closed)
                if self._in_flight is None:
                    return
                job = self._in_flight
            completion = self._perform(job)
            with self._cond:
                completion.late = job.given_up
                self._in_flight, self._done = None, completion
                self._cond.notify_all()

    def _perform(self, job: _Job) -> Completion:
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    with self._bounded():
                        if job.batch is None:
                            return Completion(None, time.monotonic() - started, stored=self.writer.stored_offsets())
                        outcome = self.writer.write(job.batch, job.expected, tolerate=self.tolerate,
                                                    before_commit=self.before_commit)
                    return Completion(job.batch, time.monotonic() - started, outcome=outcome)
                except RetriableWriteError as err:
                    attempt += 1
                    if not self._back_off(job, err, attempt):
                        return Completion(job.batch, time.monotonic() - started, abandoned=True)
                except PartitionFenced as err:
                    return Completion(job.batch, time.monotonic() - started, fenced=err)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread, which stops
            return Completion(job.batch, time.monotonic() - started, error=err)
        finally:
            self.retrying = False

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """One attempt, its connection shut by a watchdog if it outlasts `write_timeout`."""
        if self.write_timeout is None:
            yield
            return
        with self._cond:
            self._attempt += 1
            attempt = self._attempt
        watchdog = threading.Timer(self.write_timeout, self._expire, args=(attempt,))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()

    def _expire(self, attempt: int) -> None:
        with self._cond:
            if attempt != self._attempt or self._in_flight is None:
                return  # that attempt ended meanwhile
        self.writer.give_up_connection(f"an attempt took longer than the write timeout ({self.write_timeout:g} s)")

    def _back_off(self, job: _Job, err: RetriableWriteError, attempt: int) -> bool:
        """Wait before the next attempt; False when the job is to be abandoned instead."""
        with self._cond:
            if job.given_up:
                return False
        delay = backoff_seconds(attempt)
        self.stats.write_retries += 1
        self.retrying = True  # the consumer thread pauses and shows waiting-for-database
        log.warning("%s (attempt %d, next in %.1fs)", err, attempt, delay)
        with self._cond:
            return not self._cond.wait_for(lambda: job.given_up, delay)
