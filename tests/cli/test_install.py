"""A user who is not working on sinkframe: a wheel installed into a fresh virtualenv, used from an empty folder.

Nothing here may come from the checkout: the editable install the other tests use
maps `sinkframe` and `sinkframe_plugins` to this repository, which would hide a
file missing from the package. The wheel is built without a build environment
(setuptools and wheel are test requirements) and the virtualenv takes its
dependencies from this interpreter's site-packages by a path entry (a `.pth` line
adds a folder to sys.path without running the editable install's own `.pth`
hooks there), so nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from sinktest.config import FAST_GROUP_JOIN, TOPIC_ENV

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from: the files an sdist of the project holds.
SOURCES = ("sinkframe", "plugins", "schema", "configs", "setup.cfg", "pyproject.toml", "README.md")
TIMEOUT = 300  # seconds for one step, on a loaded machine


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this test session's sinkframe or Python settings."""
    drop = ("PYTHON", "SINKFRAME_", "TIMESCALEDB_", "REDPANDA_", "VIRTUAL_ENV", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a virtualenv with sinkframe installed from a wheel of this checkout."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    env = clean_env()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(root / "dist"), "./src"], root, env)
    [wheel] = (root / "dist").glob("sinkframe-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], root, env)
    python = venv / "bin" / "python"
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], root, env)
    return venv / "bin"


@pytest.mark.slow
def test_installed_package_is_not_the_checkout(installed, tmp_path):
    where = run([str(installed / "python"), "-c", "import sinkframe, sinkframe_plugins; "
                 "print(sinkframe.__file__); print(sinkframe_plugins.__file__)"], tmp_path, clean_env())
    for line in where.stdout.split():
        assert Path(line).is_relative_to(installed.parent), line


@pytest.mark.slow
def test_init_validate_and_plan_from_an_empty_folder(installed, tmp_path, pg_dsn):
    sinkframe = str(installed / "sinkframe")
    env = clean_env(SINKFRAME_DATABASE_URL=pg_dsn)
    run([sinkframe, "init"], tmp_path, env)
    assert (tmp_path / "configs" / "smart_breaker.yaml").is_file() and (tmp_path / ".env.example").is_file()

    configs = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "configs").glob("*.yaml"))
    validated = run([sinkframe, "validate", *configs], tmp_path, env)
    assert validated.stdout.count("ok  ") == 3, validated.stdout

    plan = run([sinkframe, "schema", "plan", "--plain-postgres"], tmp_path, env)
    assert 'CREATE TABLE IF NOT EXISTS "smart_breaker_data"' in plan.stdout
    shipped = installed.parent / "lib"
    origin = next(line for line in plan.stderr.splitlines() if line.startswith("spec: smart_breaker_data <- "))
    assert origin.endswith("(shipped with plugin smart_breaker)")
    assert Path(origin.split(" <- ")[1].split(":")[0]).is_relative_to(shipped), origin

    run([sinkframe, "schema", "apply", "--plain-postgres"], tmp_path, env)
    again = run([sinkframe, "schema", "plan", "--plain-postgres", "--detailed-exitcode"], tmp_path, env)
    assert again.stdout == "" and "nothing to apply" in again.stderr


@pytest.mark.slow
def test_run_from_the_starter_project_provisions_from_the_plugins_specs(installed, tmp_path, pg_dsn,
                                                                         kafka_bootstrap, new_topic):
    topics = {kind: new_topic(prefix="first-hour") for kind in TOPIC_ENV}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics["smart_breaker"], key=b"b1", value=b'{"device_id": "b1", "timestamp": '
                     b'"2026-01-01T00:00:00Z", "device_type": "smart_breaker", "measurements": {"voltage_phase_a": 231.5}}')
    assert producer.flush(30) == 0
    env = clean_env(REDPANDA_BROKERS=kafka_bootstrap, SINKFRAME_DATABASE_URL=pg_dsn, SINKFRAME_PLAIN_POSTGRES="1",
                    **FAST_GROUP_JOIN, **{TOPIC_ENV[kind]: topic for kind, topic in topics.items()})
    sinkframe = str(installed / "sinkframe")
    run([sinkframe, "init"], tmp_path, env)
    run([sinkframe, "run", "configs/raw.yaml", "configs/enriched.yaml", "configs/smart_breaker.yaml",
         "--exit-when-idle", "3"], tmp_path, env)
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT device_id, voltage_phase_a FROM smart_breaker_data").fetchall()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert rows == [("b1", 231.5)]
    assert {"iot_raw_data", "iot_enriched_data", "smart_breaker_data", "device_metadata"} <= tables
