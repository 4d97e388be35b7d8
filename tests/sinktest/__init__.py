"""Support code shared by the test folders (importable because setup.cfg sets `pythonpath = tests`).

- paths      REPO, CONFIGS
- waiting    wait_for
- config     the environment and connector files the sink under test reads (sink_env, sink_settings,
             write_connector, group-join presets)
- traffic    producing simulator traffic
- db         queries and counts, the data tables, connecting to the embedded TimescaleDB engine
- sinks      the sink in-process on a thread (InProcessSink, run_until_idle, run_until_written)
             or as a child process (start_sink_process)
- monitor    /metrics, /healthz and /readyz of a running sink
- pgserver   PrivatePostgres: a PostgreSQL server of a test's own, to stop and restart
- tsdb       the test's TimescaleDB (real server or engine: Timescale), its jobs and scheduler,
             PrivateTimescale: a TimescaleDB server of a test's own, to crash

Fixtures stay in the conftest.py files. No module here is named test_*.py, and tests/conftest.py
tells pytest not to collect this folder.
"""
