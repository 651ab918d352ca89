"""Prometheus metrics of the sidecar, served on METRICS_PORT."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The sidecar's counters, histograms and gauges, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.loads = Counter(
            "mesh_sidecar_loads", "Model loads, by outcome code", ["code"], registry=r
        )
        self.unloads = Counter(
            "mesh_sidecar_unloads", "Model unloads, by outcome code", ["code"], registry=r
        )
        self.pulled_bytes = Counter(
            "mesh_sidecar_pulled_bytes", "Bytes pulled from storage", ["storage_type"], registry=r
        )
        self.pulled_files = Counter(
            "mesh_sidecar_pulled_files", "Files pulled from storage", ["storage_type"], registry=r
        )
        self.load_seconds = Histogram(
            "mesh_sidecar_load_seconds",
            "Duration of successful loads (pull + runtime load)",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.pull_seconds = Histogram(
            "mesh_sidecar_pull_seconds",
            "Duration of pulls",
            ["storage_type"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.models_loaded = Gauge("mesh_sidecar_models_loaded", "Models loaded now", registry=r)
        self.loaded_bytes = Gauge(
            "mesh_sidecar_loaded_bytes", "Sum of the sizes reported for loaded models", registry=r
        )

    def serve(self, port: int) -> None:
        """Expose /metrics over HTTP on `port` (0: not at all)."""
        if port:
            start_http_server(port, registry=self.registry)
