"""Prometheus metrics, on a registry owned by the app (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "daohub_http_requests", "HTTP requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "daohub_http_request_duration_seconds", "Time to the end of the response, by route", ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.in_flight = Gauge("daohub_http_requests_in_flight", "Requests being served", registry=self.registry)
        self.bytes_received = Counter(
            "daohub_blob_bytes_received", "Blob bytes received from clients", registry=self.registry
        )
        self.bytes_served = Counter(
            "daohub_blob_bytes_served", "Blob bytes served to clients (by length)", registry=self.registry
        )
        self.uploads_completed = Counter(
            "daohub_blob_uploads_completed", "Blob uploads committed", ["kind"], registry=self.registry
        )
        self.uploads_failed = Counter(
            "daohub_blob_uploads_failed", "Blob uploads that failed verification", ["reason"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
