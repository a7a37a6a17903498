"""System metrics of a run (``system/...``): MLflow's own monitor, its samples sent through ``RunTracker``.

MLflow's ``SystemMetricsMonitor`` samples CPU, memory, disk, network and, where there is one, NVIDIA or
AMD GPU utilisation and memory, and names them ``system/<metric>`` (``system/<node_id>/<metric>`` when a
node id is set, as every rank of a data-parallel run does: ``mlflow.system_metrics.set_system_metrics_node_id``).
Its own logging loop writes with a private client and stops for good at the first failed call; here its
samples go through the run's tracker instead, so they share the retries, the buffering through a server
outage and the exactly-once steps of every other metric, and a resumed run continues their steps.
"""

from __future__ import annotations

import logging
import threading

from mlflow.system_metrics import set_system_metrics_node_id
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

logger = logging.getLogger(__name__)

PREFIX = "system/"


class SystemMetrics(SystemMetricsMonitor):
    """Samples every ``interval`` seconds into ``tracker``'s run (a ``RunTracker``) until ``finish``."""

    def __init__(self, tracker, interval: float, node_id: str | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"tracking.system_metrics_interval: must be > 0 seconds, got {interval}")
        set_system_metrics_node_id(node_id)  # the process-wide setting MLflow's monitor reads
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no "started monitoring" lines
        # tracking_uri given, so the base class does not consult the global one; it makes no call here
        super().__init__(tracker.run_id, sampling_interval=interval, node_id=node_id, tracking_uri=tracker.uri)
        self.tracker = tracker
        self.prefix = PREFIX + (f"{self.node_id}/" if self.node_id else "")
        self._logging_step = tracker.next_step(self.prefix)  # a resumed run continues its steps
        self._shutdown_event = threading.Event()

    def monitor(self) -> None:
        """Sample, wait, publish the mean of the samples; the last partial period is published on stop."""
        while not self._shutdown_event.is_set():
            self.collect_metrics()
            self._shutdown_event.wait(self.sampling_interval)
            try:
                self.publish_metrics(self.aggregate_metrics())
            except Exception as err:  # a refusal by the store: say it once and stop sampling
                logger.warning("system metrics stopped: %s: %s", type(err).__name__, err)
                return

    def publish_metrics(self, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics({self.prefix + k: v for k, v in metrics.items()}, self._logging_step)
        self._logging_step += 1
        for monitor in self.monitors:
            monitor.clear_metrics()

    def finish(self) -> None:
        if self._process is None:
            return
        self._shutdown_event.set()
        self._process.join(timeout=30)
        self._process = None
