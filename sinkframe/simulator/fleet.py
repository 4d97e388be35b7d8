"""The simulated fleet: smart breakers and environment sensors, no I/O.

Each call of `Fleet.messages(now)` takes one reading of every device at event
time `now` (epoch seconds) and yields the messages it makes, per the message
contracts of the built-in mappers (plugins/*.py):

- every device sends its reading as it came off the wire to `raw`
  (`{device_id, timestamp (epoch ms), topic, payload}`),
- and, enriched with metadata, to `enriched`
  (`{device_id, timestamp (ISO-8601), device_type, payload, metadata, fdi_package}`);
- smart breakers also send their typed measurements to `smart_breaker`
  (`{device_id, timestamp, device_type, measurements, metadata?}`).

Values follow physics closely enough for dashboards to look right: three-phase
voltages around 230 V / 50 Hz or 120 V / 60 Hz with noise and a daily pattern
(lower under peak load), currents following a residential or commercial daily
load curve, temperature following the current with a thermal lag, energy
integrated from active power, and occasional trips (random or on overload)
after which a breaker stays tripped for a few minutes.

Failing contacts (`degrading`): that many breakers, chosen by the seed, develop
a contact whose resistance grows from its onset until it ends in a thermal trip
(`degrading_faults`): the breaker runs hotter than its load explains, the failing
phase carries less current than the others, and at the trip time the breaker
trips for good. Healthy breakers keep their random and overload trips. The
faults are planned from their own random stream, so the readings of the healthy
breakers do not depend on how many others degrade. `Fleet.truth()` is the ground
truth (which breakers, onset, trip) for measuring a detector.

Imperfections, each at its own configurable rate per message: out-of-order
messages (event time before the device's previous reading), late messages
(event time minutes to hours in the past), and malformed messages that the
mappers must reject (dead letters). `Fleet.counts` tallies what was produced,
so a test can predict the rows and dead letters a run must end with.

Everything random comes from one `random.Random(seed)`: the same seed and the
same sequence of `now` values give the same bytes.
"""
from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, NamedTuple, Sequence

import orjson

KINDS = ("raw", "enriched", "smart_breaker")
DEFAULT_TOPICS = {"raw": "iot.raw", "enriched": "iot.enriched",
                  "smart_breaker": "iot.smart_breaker.enriched"}

BREAKER, SENSOR = "smart_breaker", "env_sensor"
LATE_SECONDS = (120.0, 7200.0)  # how far in the past a late message's event time lies
TAU_SECONDS = 600.0  # thermal time constant of a breaker
TRIP_SECONDS = (30.0, 300.0)  # how long a tripped breaker stays off
OVERLOAD = 1.3  # a phase current above this times the rating trips the breaker
# A failing contact: from onset to trip its resistance grows (as frac**2, frac
# going 0 -> 1), heating the breaker by up to HOTSPOT_C times (HOTSPOT_IDLE + the
# load share) and taking up to PHASE_DRIFT of its phase's current.
DEGRADE_HOURS = (4.0, 10.0)  # how long a contact takes from onset to trip
HOTSPOT_C = 60.0
HOTSPOT_IDLE = 0.5
PHASE_DRIFT = 0.3

_MANUFACTURERS = (("ABB", "S800-SB"), ("Schneider Electric", "Acti9 iC60"),
                  ("Siemens", "5SY Smart"), ("Eaton", "xEffect SB"))
_SITES = ("Plant North", "Plant South", "Head Office", "Warehouse 2", "Substation 7")


class Message(NamedTuple):
    kind: str  # "raw", "enriched" or "smart_breaker"; DEFAULT_TOPICS maps it to a topic
    key: bytes  # the device id: all messages of a device go to one partition
    value: bytes  # JSON (or, for a malformed message, whatever the defect is)


@dataclass
class Device:
    device_id: str
    device_type: str
    nominal_v: float
    frequency: float
    rated_a: float
    profile: str  # residential or commercial load curve
    imbalance: tuple[float, float, float]
    pf_base: float
    ambient_c: float
    utc_offset_h: float
    metadata: dict
    fdi_package: dict
    temperature: float | None = None
    energy_kwh: float = 0.0
    trip_count: int = 0
    tripped_until: float = 0.0
    last_time: float | None = None
    readings: int = 0
    humidity: float = 45.0
    fault: "ContactFault | None" = None


@dataclass(frozen=True)
class ContactFault:
    """A failing contact on one phase of a breaker: onset and thermal trip, epoch seconds."""

    phase: int  # 0, 1, 2 for a, b, c
    onset: float
    trip: float

    def progress(self, t: float) -> float:
        """0 before the onset, 1 at the trip."""
        return min(max((t - self.onset) / (self.trip - self.onset), 0.0), 1.0)


@dataclass
class Fleet:
    """`devices` devices, about `sensor_share` of them environment sensors, the rest breakers.

    Rates are per message (0.0 to 1.0). `metadata_every`: a device's messages carry
    its metadata on its first reading and then on every n-th one. `kinds`: which
    message kinds to make at all.
    """

    devices: int = 10
    seed: int = 0
    kinds: Sequence[str] = KINDS
    sensor_share: float = 0.2
    malformed_rate: float = 0.0
    late_rate: float = 0.01
    out_of_order_rate: float = 0.01
    trip_rate: float = 0.0005
    metadata_every: int = 10
    degrading: int = 0  # breakers with a failing contact
    degrade_window: tuple[float, float] | None = None  # (start, end) epoch s their trips fall in
    counts: Counter = field(default_factory=Counter, init=False)

    def __post_init__(self):
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown message kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
        for name in ("sensor_share", "malformed_rate", "late_rate", "out_of_order_rate", "trip_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.devices < 1:
            raise ValueError("a fleet needs at least one device")
        self._rng = random.Random(self.seed)
        self.fleet = [self._new_device(i) for i in range(self.devices)]
        if self.degrading:
            self._plan_faults()

    # -- the public API ------------------------------------------------------------
    def messages(self, now: float) -> Iterator[Message]:
        """One reading of every device at event time `now` (epoch seconds)."""
        for device in self.fleet:
            yield from self._device_messages(device, now)

    def stream(self, clock: Callable[[], float] = time.time) -> Iterator[Message]:
        """Readings forever, device after device, each at the event time `clock()` gives."""
        while True:
            for device in self.fleet:
                yield from self._device_messages(device, clock())

    def history(self, start: float, end: float, interval: float) -> Iterator[Message]:
        """Readings every `interval` seconds from `start` up to (not including) `end`."""
        ticks = max(0, math.ceil((end - start) / interval))
        for tick in range(ticks):
            yield from self.messages(start + tick * interval)

    @property
    def messages_per_tick(self) -> int:
        """How many messages one `messages(now)` call yields."""
        kinds = set(self.kinds)
        per_breaker = len(kinds)
        per_sensor = len(kinds - {"smart_breaker"})
        breakers = sum(1 for d in self.fleet if d.device_type == BREAKER)
        return breakers * per_breaker + (self.devices - breakers) * per_sensor

    def truth(self) -> dict:
        """The ground truth of the failing contacts, as JSON-ready data (times ISO-8601 UTC)."""
        faults = [{"device_id": d.device_id, "phase": "abc"[d.fault.phase], "onset": _iso(d.fault.onset),
                   "trip": _iso(d.fault.trip)} for d in self.fleet if d.fault is not None]
        window = self.degrade_window
        return {"seed": self.seed, "devices": self.devices,
                "breakers": [d.device_id for d in self.fleet if d.device_type == BREAKER],
                "window": None if window is None else [_iso(window[0]), _iso(window[1])],
                "degrading": faults}

    def _plan_faults(self) -> None:
        """Choose the failing breakers and their onset and trip times, from a random stream of their own."""
        breakers = [d for d in self.fleet if d.device_type == BREAKER]
        if self.degrading > len(breakers):
            raise ValueError(f"degrading: {self.degrading} breakers asked, the fleet has {len(breakers)}")
        if self.degrade_window is None:
            raise ValueError("degrading breakers need a window (start, end) for their trips")
        start, end = self.degrade_window
        if end <= start:
            raise ValueError("the degrading window must end after it starts")
        planner = random.Random(f"contact-faults-{self.seed}")
        for device in planner.sample(breakers, self.degrading):
            hours = planner.uniform(*DEGRADE_HOURS)
            duration = min(hours * 3600.0, 0.6 * (end - start))
            trip = planner.uniform(start + duration, end - 0.05 * (end - start))
            device.fault = ContactFault(planner.randrange(3), trip - duration, trip)

    # -- devices -------------------------------------------------------------------
    def _new_device(self, index: int) -> Device:
        rng = self._rng
        kind = SENSOR if rng.random() < self.sensor_share else BREAKER
        us = rng.random() < 0.25
        manufacturer, model = rng.choice(_MANUFACTURERS)
        site = rng.choice(_SITES)
        prefix = "breaker" if kind == BREAKER else "sensor"
        device_id = f"{prefix}-{index:05d}"
        capabilities = (["metering", "remote_trip", "thermal_monitoring"] if kind == BREAKER
                        else ["temperature", "humidity", "co2"])
        return Device(
            device_id=device_id, device_type=kind,
            nominal_v=120.0 if us else 230.0, frequency=60.0 if us else 50.0,
            rated_a=rng.choice((16.0, 32.0, 63.0, 100.0)),
            profile=rng.choice(("residential", "commercial")),
            imbalance=tuple(rng.uniform(-0.08, 0.08) for _ in range(3)),
            pf_base=rng.uniform(0.88, 0.98), ambient_c=rng.uniform(18.0, 28.0),
            utc_offset_h=rng.choice((-8, -5, 0, 1, 2, 8)),
            metadata={"manufacturer": manufacturer if kind == BREAKER else "Vaisala",
                      "model": model if kind == BREAKER else "HMP-Env",
                      "firmware_version": f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
                      "location": f"{site} / Building {rng.choice('ABCD')} / Panel {rng.randint(1, 40)}",
                      "capabilities": capabilities},
            fdi_package={"package_id": f"fdi-{prefix}-{rng.randint(1000, 9999)}",
                         "version": f"1.{rng.randint(0, 5)}.0"},
            humidity=rng.uniform(30.0, 60.0),
        )

    def _device_messages(self, device: Device, now: float) -> Iterator[Message]:
        rng = self._rng
        event_time, tag = now, "on_time"
        draw = rng.random()
        if draw < self.late_rate:
            event_time, tag = now - rng.uniform(*LATE_SECONDS), "late"
        elif draw < self.late_rate + self.out_of_order_rate and device.last_time is not None:
            event_time, tag = device.last_time - rng.uniform(0.001, 5.0), "out_of_order"
        if tag == "on_time":
            reading = self._advance(device, now)
        else:
            reading = self._reading_at(device, event_time)  # a delayed reading: state stays
        with_metadata = device.readings % self.metadata_every == 0
        device.readings += 1
        key = device.device_id.encode()
        for kind in self.kinds:
            if kind == "smart_breaker" and device.device_type != BREAKER:
                continue
            if self.malformed_rate and rng.random() < self.malformed_rate:
                self.counts[(kind, "malformed")] += 1
                yield Message(kind, key, self._malformed(kind, device, event_time))
                continue
            self.counts[(kind, tag)] += 1
            yield Message(kind, key, _encode(kind, device, event_time, reading, with_metadata))

    # -- physics -------------------------------------------------------------------
    def _advance(self, device: Device, now: float) -> dict:
        """Take a live reading at `now`: the device's state (temperature, energy, trips) moves on."""
        dt = 0.0 if device.last_time is None else min(max(now - device.last_time, 0.0), 3600.0)
        if device.device_type == SENSOR:
            reading = self._sensor_reading(device, now)
            device.humidity = reading["humidity"]
        else:
            reading = self._breaker_reading(device, now)
            self._update_breaker(device, now, dt, reading)
        device.last_time = now
        return reading

    def _update_breaker(self, device: Device, now: float, dt: float, reading: dict) -> None:
        rng = self._rng
        target = reading.pop("_target_temperature")
        overloaded = max(reading["current_phase_a"], reading["current_phase_b"],
                         reading["current_phase_c"]) > OVERLOAD * device.rated_a
        # Drawn on every reading, tripped or not: a breaker's state never shifts the others' random values.
        chance, off_for = rng.random(), rng.uniform(*TRIP_SECONDS)
        if now >= device.tripped_until and (overloaded or chance < self.trip_rate):
            device.trip_count += 1
            device.tripped_until = now + off_for
            reading.update(_tripped_values(), breaker_status="tripped", trip_count=device.trip_count)
        fault = device.fault
        if fault is not None and now >= fault.trip and device.tripped_until != math.inf:
            # The thermal trip the failing contact ends in: the breaker stays off until repaired.
            device.trip_count += 1
            device.tripped_until = math.inf
            reading.update(_tripped_values(), breaker_status="tripped", trip_count=device.trip_count)
        # Temperature approaches its steady state for this current with a thermal lag.
        if device.temperature is None:
            device.temperature = target
        else:
            device.temperature += (target - device.temperature) * (1 - math.exp(-dt / TAU_SECONDS))
        reading["temperature"] = round(device.temperature + rng.gauss(0, 0.1), 2)
        device.energy_kwh += reading["active_power"] * dt / 3600.0
        reading["energy_kwh"] = round(device.energy_kwh, 4)

    def _reading_at(self, device: Device, t: float) -> dict:
        """A reading from the past (late or out of order), sent now: the device's state stays."""
        if device.device_type == SENSOR:
            return self._sensor_reading(device, t)
        reading = self._breaker_reading(device, t)
        target = reading.pop("_target_temperature")
        reading["temperature"] = round(target if device.temperature is None else device.temperature, 2)
        since = max((device.last_time or t) - t, 0.0)
        reading["energy_kwh"] = round(max(device.energy_kwh - reading["active_power"] * since / 3600.0, 0.0), 4)
        return reading

    def _breaker_reading(self, device: Device, t: float) -> dict:
        rng = self._rng
        hour = _local_hour(t, device.utc_offset_h)
        load = _load_fraction(device.profile, hour) * math.exp(rng.gauss(0, 0.05))
        if rng.random() < 0.01:  # a motor start or a kettle: a short spike
            load *= rng.uniform(1.2, 1.6)
        # The grid sags a little under the evening peak and rises at night.
        sag = 0.012 * math.cos(2 * math.pi * (hour - 3) / 24) - 0.01 * max(load - 0.6, 0)
        reading: dict = {"_target_temperature": 0.0}
        currents, voltages = [], []
        worn = 0.0 if device.fault is None else device.fault.progress(t) ** 2
        for index, (phase, skew) in enumerate(zip("abc", device.imbalance)):
            volts = device.nominal_v * (1 + sag + skew * 0.05 + rng.gauss(0, 0.003))
            amps = max(device.rated_a * load * (1 + skew) + rng.gauss(0, 0.01 * device.rated_a), 0.0)
            if worn and index == device.fault.phase:
                amps *= 1.0 - PHASE_DRIFT * worn
            voltages.append(volts)
            currents.append(amps)
            reading[f"voltage_phase_{phase}"] = round(volts, 2)
            reading[f"current_phase_{phase}"] = round(amps, 3)
        pf = min(max(device.pf_base - 0.06 * (1 - min(load, 1.0)) + rng.gauss(0, 0.005), 0.5), 1.0)
        apparent = sum(v * i for v, i in zip(voltages, currents)) / 1000.0
        ambient = device.ambient_c + 4.0 * math.cos(2 * math.pi * (hour - 15) / 24)
        load_share = max(currents) / device.rated_a
        reading["_target_temperature"] = ambient + 35.0 * load_share ** 2
        if worn:
            reading["_target_temperature"] += HOTSPOT_C * worn * (HOTSPOT_IDLE + load_share)
        reading.update(
            power_factor=round(pf, 3),
            frequency=round(device.frequency + rng.gauss(0, 0.015), 3),
            active_power=round(apparent * pf, 3),
            reactive_power=round(apparent * math.sin(math.acos(pf)), 3),
            breaker_status="closed",
            trip_count=device.trip_count,
        )
        if t < device.tripped_until:  # still off after a trip: no current, cooling down
            reading.update(_tripped_values(), breaker_status="tripped", _target_temperature=ambient)
        return reading

    def _sensor_reading(self, device: Device, t: float) -> dict:
        rng = self._rng
        hour = _local_hour(t, device.utc_offset_h)
        occupied = _load_fraction("commercial", hour)
        return {
            "temperature": round(device.ambient_c + 3.0 * math.cos(2 * math.pi * (hour - 15) / 24)
                                 + rng.gauss(0, 0.15), 2),
            "humidity": round(min(max(device.humidity + rng.gauss(0, 0.5), 5.0), 95.0), 1),
            "co2_ppm": round(420 + 700 * occupied + rng.gauss(0, 15)),
            "battery_pct": max(0, 100 - device.readings // 1000),
        }

    # -- malformed messages ----------------------------------------------------------
    def _malformed(self, kind: str, device: Device, t: float) -> bytes:
        """A message the connector must dead-letter: each defect fails decode or map."""
        good = {"device_id": device.device_id, "timestamp": _iso(t), "device_type": device.device_type}
        defects = [
            b'{"device_id": "' + device.device_id.encode() + b'", "timestamp": ',  # cut off
            b"\xff\xfe not utf-8 \x00",
            orjson.dumps([device.device_id, t]),  # JSON, but not an object
            orjson.dumps({**good, "device_id": None}),
            orjson.dumps({**good, "device_id": "   "}),
            orjson.dumps({**good, "timestamp": "yesterday at noon"}),
            orjson.dumps({**good, "timestamp": True}),
        ]
        if kind == "smart_breaker":
            defects += [
                orjson.dumps({**good, "measurements": "230.1,229.8,231.0"}),
                orjson.dumps({**good, "measurements": {"voltage_phase_a": "high"}}),
                orjson.dumps({**good, "measurements": {"current_phase_b": True}}),
                orjson.dumps({**good, "measurements": {"trip_count": 2.5}}),
            ]
        elif kind == "enriched":
            defects += [
                orjson.dumps({**good, "payload": [1, 2, 3]}),
                orjson.dumps({**good, "metadata": "ACME SB-1"}),
            ]
        return self._rng.choice(defects)


def _encode(kind: str, device: Device, t: float, reading: dict, with_metadata: bool) -> bytes:
    if kind == "raw":
        return orjson.dumps({"device_id": device.device_id, "timestamp": int(t * 1000),
                             "topic": f"devices/{device.device_id}/telemetry", "payload": reading})
    message = {"device_id": device.device_id, "timestamp": _iso(t), "device_type": device.device_type}
    if kind == "enriched":
        message.update(payload=reading, metadata=device.metadata, fdi_package=device.fdi_package)
    else:
        message["measurements"] = reading
        if with_metadata:
            message.update(metadata=device.metadata, fdi_package=device.fdi_package)
    return orjson.dumps(message)


def _tripped_values() -> dict:
    return {"current_phase_a": 0.0, "current_phase_b": 0.0, "current_phase_c": 0.0,
            "active_power": 0.0, "reactive_power": 0.0}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local_hour(t: float, utc_offset_h: float) -> float:
    return ((t / 3600.0) + utc_offset_h) % 24.0


def _load_fraction(profile: str, hour: float) -> float:
    """Share of the rated current drawn at this local hour."""
    if profile == "commercial":
        # Flat by day on working hours, a smooth ramp at both ends.
        day = 1 / (1 + math.exp(-(hour - 8) * 2)) - 1 / (1 + math.exp(-(hour - 18) * 2))
        return 0.15 + 0.6 * day
    morning = math.exp(-((hour - 7.5) / 1.5) ** 2)
    evening = math.exp(-((hour - 19.5) / 2.5) ** 2)
    return 0.15 + 0.35 * morning + 0.55 * evening
