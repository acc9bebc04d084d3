"""Prometheus metrics, on a registry owned by the app (no process-global collectors)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class InFlight:
    """Requests whose handler is still running, so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True if every running handler finished within `timeout` seconds."""
        if self.count == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._idle = None


class Metrics:
    def __init__(self) -> None:
        self.active = InFlight()
        self._request_children: dict = {}
        self._latency_children: dict = {}
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

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a finished request; label children are cached (labels() is not free)."""
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
