"""The benchmark's workload: smart-breaker messages, and the same data as ready-made rows.

Messages have the shape the fleet simulator (sinkframe.simulator) gives
`iot.smart_breaker.enriched`: all fourteen measurements, an ISO-8601 time, and, on
a device's first message and every tenth after it, the breaker's metadata and FDI
package (so those also yield a device_metadata upsert); about 680 bytes each.
Values cycle through a pool built once, so producing a million messages costs
little more than encoding them (the simulator's physics runs at ~40k messages/s,
too slow to load a million); the database sees the same column types and widths
as with fresh values. The latency run uses the simulator itself.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sinkframe.errors import SinkframeError
from sinkframe.simulator.produce import ProduceReport
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS

TOPIC_PREFIX = "bench.smart_breaker"
DEVICES = 1_000
POOL_SIZE = 4_096
METADATA_EVERY = 10  # as the simulator's default: a device's first message, then every tenth
STATUSES = ("closed", "closed", "closed", "open", "tripped")
# Today, midnight UTC: the rows land in the current chunk, as live telemetry does, and on
# TimescaleDB no retention or compression policy of the schema touches them during a run.
BASE_TIME = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)

PRODUCER_SETTINGS = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
}


@dataclass(frozen=True)
class Produced:
    """What a producer run left on the broker: the next offset of every partition."""

    topic: str
    messages: int
    end_offsets: dict[int, int]
    seconds: float


def device_id(i: int) -> str:
    return f"breaker-{i % DEVICES:05d}"


def _measurement_pool(seed: int = 6) -> list[dict]:
    rnd = random.Random(seed)
    pool = []
    for _ in range(POOL_SIZE):
        values = {name: round(rnd.uniform(0.5, 500.0), 3) for name in FLOAT_MEASUREMENTS}
        values["power_factor"] = round(rnd.uniform(0.8, 1.0), 3)
        values["frequency"] = round(rnd.uniform(49.9, 50.1), 3)
        values["breaker_status"] = rnd.choice(STATUSES)
        values["trip_count"] = rnd.randrange(0, 40)
        pool.append(values)
    return pool


MEASUREMENTS = _measurement_pool()
METADATA = [
    {"manufacturer": "Acme Electric", "model": f"SB-{200 + d % 7}", "firmware_version": f"2.{d % 5}.1",
     "location": f"Plant {d % 3 + 1} / Panel {d % 40:02d}", "capabilities": ["trip", "metering", "remote-open"]}
    for d in range(DEVICES)
]
FDI_PACKAGE = {"package_id": "fdi-smart-breaker", "version": "1.4.0"}


def message(i: int) -> dict:
    """Message number i, of device i % DEVICES, measured at BASE_TIME + i ms."""
    value = {
        "device_id": device_id(i),
        "timestamp": (BASE_TIME + timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
        "device_type": "smart_breaker",
        "measurements": MEASUREMENTS[i % POOL_SIZE],
    }
    if (i // DEVICES) % METADATA_EVERY == 0:
        value["metadata"] = METADATA[i % DEVICES]
        value["fdi_package"] = FDI_PACKAGE
    return value


def encoded(i: int) -> bytes:
    return orjson.dumps(message(i))


def spaced(start: datetime, step: timedelta) -> Callable[[int], bytes]:
    """The encoder of message i measured at start + i * step instead: each device's rows then lie
    DEVICES * step apart (the scoring section's model needs hours of each device's history)."""
    def encode(i: int) -> bytes:
        value = message(i)
        value["timestamp"] = (start + i * step).isoformat(timespec="milliseconds")
        return orjson.dumps(value)

    return encode


def measurement_rows(n: int, *, topic: str, partitions: int) -> list[tuple]:
    """n smart_breaker_data rows, as the smart_breaker mapper makes them from these messages."""
    rows = []
    append = rows.append
    names = FLOAT_MEASUREMENTS
    pooled = [(tuple(m[name] for name in names), m["breaker_status"], m["trip_count"]) for m in MEASUREMENTS]
    devices = [device_id(d) for d in range(DEVICES)]
    for i in range(n):
        floats, status, trips = pooled[i % POOL_SIZE]
        append((BASE_TIME + timedelta(milliseconds=i), devices[i % DEVICES], *floats, status, trips, None,
                topic, i % partitions, i // partitions))
    return rows


# -- the broker ------------------------------------------------------------------------
def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
    try:
        future.result(timeout=30)
    except Exception as err:  # noqa: BLE001 - KafkaException and timeouts alike
        raise SinkframeError(f"creating benchmark topic {topic}: {err}") from err


def new_producer(bootstrap: str, on_delivery: Callable | None = None) -> Producer:
    settings = {"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS}
    if on_delivery is not None:
        settings["on_delivery"] = on_delivery
    return Producer(settings)


def produce_all(bootstrap: str, topic: str, n: int, *, values: Callable[[int], bytes] = encoded) -> Produced:
    """Produce messages 0..n-1 as fast as the broker takes them; wait until all are acknowledged."""
    end_offsets: dict[int, int] = {}
    failures: list[str] = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))
        else:
            partition, offset = msg.partition(), msg.offset()
            if offset >= end_offsets.get(partition, 0):
                end_offsets[partition] = offset + 1

    producer = new_producer(bootstrap, delivered)
    started = time.perf_counter()
    for i in range(n):
        _produce_one(producer, topic, device_id(i).encode(), values(i))
        if i % 5_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    if remaining or failures:
        raise SinkframeError(f"producing the benchmark messages: {remaining} not acknowledged, "
                             f"{len(failures)} failed ({failures[:1]})")
    return Produced(topic, n, end_offsets, seconds)


def untimed(i: int) -> bytes:
    """Message i without a `timestamp`: the sink then takes the Kafka record's, which the
    producer sets when it sends it (the latency section's clock)."""
    value = message(i)
    del value["timestamp"]
    return orjson.dumps(value)


# One cycle of pre-encoded messages: every device POOL_CYCLE_ROUNDS times, with metadata in the
# same share of rounds as the backlog's messages (METADATA_EVERY).
POOL_CYCLE_ROUNDS = 2 * METADATA_EVERY
PACE_TICK_SECONDS = 0.001


def produce_paced(bootstrap: str, topic: str, *, rate: float, seconds: float) -> ProduceReport:
    """Offer `rate` messages per second for `seconds`, from messages encoded beforehand.

    Each message's Kafka timestamp is the time it is handed to the producer (librdkafka's
    CreateTime), and the messages carry no `timestamp` of their own, so the row's `time` is
    its send time. Sending is paced against the clock every millisecond, not per message:
    the loop costs a few microseconds a message, so the generator leaves the cores to the sink.
    """
    pool = [(device_id(i).encode(), untimed(i)) for i in range(DEVICES * POOL_CYCLE_ROUNDS)]
    report = ProduceReport()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "on_delivery": report.on_delivery,
                         "queue.buffering.max.messages": 500_000})
    produce = producer.produce
    started = time.perf_counter()
    end = started + seconds
    while (now := time.perf_counter()) < end:
        due = int((now - started) * rate)
        while report.sent < due:
            key, value = pool[report.sent % len(pool)]
            try:
                produce(topic, value=value, key=key)
            except BufferError:  # the local queue is full: the broker is behind, and so is the offer
                break
            report.sent += 1
        producer.poll(PACE_TICK_SECONDS)
    report.seconds = time.perf_counter() - started
    return report.flushed(producer, 60)


def _produce_one(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:  # local queue full: let the broker catch up
            producer.poll(0.05)

