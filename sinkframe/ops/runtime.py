"""RunMonitor: what `sinkframe run` adds around a pipeline (metrics endpoint, progress line).

Lifecycle, driven by the `run` command and the runner:
    monitor = RunMonitor(metrics_port=9108, progress=None)   # binds the port at once
    run_connectors(..., on_created=monitor.started, on_tick=monitor.tick)
    monitor.close()

Until `started(pipeline)`, /healthz says "starting" and /readyz is not ready;
from then on (the runner calls it before it waits for the database) /readyz
says what the pipeline waits for. `tick()` runs on the runner's main thread
every 0.2 s and must stay cheap; the slow parts (broker watermarks, the
database probe) run in their own threads, and the endpoints read their last
results.
"""
from __future__ import annotations

import os
import sys

from sinkframe.ops.health import DatabaseProbe, liveness, readiness
from sinkframe.ops.kafka import WatermarkPoller
from sinkframe.ops.lag import StallWatch, partition_positions
from sinkframe.ops.metrics import BatchLatency, PipelineCollector, new_registry
from sinkframe.ops.progress import Progress
from sinkframe.ops.server import OpsServer


class RunMonitor:
    def __init__(self, *, metrics_port: int | None = None, progress: bool | None = None,
                 metrics_host: str | None = None, summary_every: float | None = None, stream=None):
        """metrics_port: None or 0 = no endpoint. progress: True = live line, False = nothing,
        None = live line on a terminal, else a summary log line every `summary_every` seconds
        (default $SINKFRAME_PROGRESS_INTERVAL or 30)."""
        stream = stream or sys.stderr
        self.pipeline = None
        self.probe: DatabaseProbe | None = None
        self.watermarks: WatermarkPoller | None = None
        self.stalls: StallWatch | None = None
        self.registry = new_registry()
        self.latency = BatchLatency()
        self.registry.register(PipelineCollector(self))
        if progress is None:
            live = stream.isatty()
            every = summary_every or float(os.environ.get("SINKFRAME_PROGRESS_INTERVAL", "30"))
            self.progress = Progress(live=live, stream=stream, summary_every=every)
        elif progress:
            self.progress = Progress(live=True, stream=stream)
        else:
            self.progress = None
        self.server = None
        if metrics_port:
            host = metrics_host or os.environ.get("SINKFRAME_METRICS_HOST", "0.0.0.0")
            self.server = OpsServer(metrics_port, host=host, registry=self.registry,
                                    health=lambda: liveness(self.pipeline),
                                    ready=lambda: readiness(self.pipeline, self.probe, self.stalls))

    @property
    def port(self) -> int | None:
        return self.server.port if self.server else None

    def started(self, pipeline) -> None:
        """Watch `pipeline` (from before it waits for the database); calling it again does nothing."""
        if self.pipeline is pipeline or (self.server is None and self.progress is None):
            return
        self.watermarks = WatermarkPoller(pipeline.settings.kafka, {t.connector.topic for t in pipeline.tasks})
        self.watermarks.start()
        self.stalls = StallWatch(pipeline.settings.stall_after)
        if self.server is not None:
            # A one-connection server (the embedded engine) refuses a second connection.
            single = pipeline.pool is not None and pipeline.pool.max_size == 1
            self.probe = DatabaseProbe(pipeline.settings.dsn, pool=pipeline.pool if single else None).start()
        self.pipeline = pipeline

    def tick(self) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        self.latency.update(pipeline.tasks)
        self.stalls.update(pipeline.tasks, self.watermarks)
        if self.progress is not None:
            self.progress.update(pipeline.tasks, self.total_lag(), stalls=self.stalls)

    def total_lag(self) -> int | None:
        """Messages not yet written over the partitions this process owns (None: unknown yet)."""
        if self.watermarks is None or self.watermarks.updated_at is None or self.pipeline is None:
            return None
        return sum(p.lag or 0 for p in partition_positions(self.pipeline.tasks, self.watermarks))

    def close(self) -> None:
        if self.pipeline is not None:
            self.latency.update(self.pipeline.tasks)  # the batches written while stopping
        if self.progress is not None:
            self.progress.close()
        if self.server is not None:
            self.server.close()
        if self.watermarks is not None:
            self.watermarks.stop()
        if self.probe is not None:
            self.probe.close()
