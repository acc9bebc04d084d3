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
        self.relays = Counter(
            "daohub_blob_relays", "Blob GETs relayed from storage (not local, not redirected), by how: "
            "splice (socket to socket, zero-copy) or stream (through the process)", ["method"],
            registry=self.registry,
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


class ProxyMetrics:
    """The pull-through cache's counters, on the app's registry (created only when it is configured)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.upstream_requests = Counter(
            "daohub_proxy_upstream_requests", "Requests sent to upstream registries, by kind and status",
            ["upstream", "method", "kind", "status"], registry=registry,
        )
        self.upstream_failures = Counter(
            "daohub_proxy_upstream_failures", "Upstream requests that failed (unavailable, rate limited, cut)",
            ["upstream", "reason"], registry=registry,
        )
        self.cache = Counter(
            "daohub_proxy_cache_requests", "Cache lookups: hit, miss (fetched), revalidated, stale (served "
            "because the upstream failed)", ["upstream", "kind", "result"], registry=registry,
        )
        self.coalesced = Counter(
            "daohub_proxy_coalesced", "Requests that joined a fetch already under way instead of starting one",
            ["upstream", "kind"], registry=registry,
        )
        self.bytes_fetched = Counter(
            "daohub_proxy_bytes_fetched", "Blob bytes received from upstreams", ["upstream"], registry=registry,
        )
        self.fetches_in_flight = Gauge(
            "daohub_proxy_fetches_in_flight", "Blob fetches from upstreams under way", ["upstream"],
            registry=registry,
        )
        # The upstream's own RateLimit-* headers (Docker Hub: `ratelimit-remaining: 76;w=21600`).
        self.ratelimit_limit = Gauge(
            "daohub_proxy_upstream_ratelimit_limit", "RateLimit-Limit last sent by the upstream", ["upstream"],
            registry=registry,
        )
        self.ratelimit_remaining = Gauge(
            "daohub_proxy_upstream_ratelimit_remaining", "RateLimit-Remaining last sent by the upstream",
            ["upstream"], registry=registry,
        )
        self.ratelimit_reset = Gauge(
            "daohub_proxy_upstream_ratelimit_reset_seconds", "RateLimit-Reset last sent by the upstream",
            ["upstream"], registry=registry,
        )
        self.ratelimit_window = Gauge(
            "daohub_proxy_upstream_ratelimit_window_seconds", "The window (w=) of the upstream's RateLimit-Limit",
            ["upstream"], registry=registry,
        )
        # Cache bounds (hub/proxy/eviction.py).
        self.evicted_images = Counter(
            "daohub_proxy_evicted_images", "Cached images evicted (over the size cap or past the TTL)", ["upstream"],
            registry=registry,
        )
        self.evicted_bytes = Counter(
            "daohub_proxy_evicted_bytes", "How much eviction shrank the cache (blob bytes it no longer links)",
            ["upstream"], registry=registry,
        )
        self.deleted_bytes = Counter(
            "daohub_proxy_evicted_deleted_bytes", "Blob bytes deleted from storage by eviction (linked nowhere else)",
            ["upstream"], registry=registry,
        )
        self.cache_size = Gauge(
            "daohub_proxy_cache_size_bytes", "Bytes of the distinct blobs in the cache, after the last eviction run",
            ["upstream"], registry=registry,
        )
