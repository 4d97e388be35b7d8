"""Operations: metrics, health and readiness, live progress, `sinkframe status`, `simulate`, `export`.

`sinkframe run` uses `runtime.RunMonitor` (metrics endpoint and progress line);
`cli.commands` are mounted on the `sinkframe` command group.
"""
