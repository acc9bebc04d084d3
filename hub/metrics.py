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


class _Families:
    """A collector that yields metric families built elsewhere (merge_workers)."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def merge_workers(expositions: dict[int, str]) -> bytes:
    """One exposition of every worker's metrics (server.workers), each sample labelled with its
    worker="N": a scraper that reaches any worker sees them all, and sums across workers with
    sum without (worker). `expositions`: worker index -> its own /metrics text."""
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    merged: dict[str, Metric] = {}
    for worker, text in sorted(expositions.items()):
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            into.samples += [Sample(sample.name, {**sample.labels, "worker": str(worker)}, sample.value,
                                    sample.timestamp, sample.exemplar) for sample in family.samples]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(merged.values())))
    return generate_latest(registry)


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


class WebhookMetrics:
    """Webhook delivery (hub/events/delivery.py): each attempt's outcome and latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter("daohub_webhook_attempts", "Webhook delivery attempts, by outcome (delivered, "
                                "retry, dead)", ["outcome"], registry=registry)
        self.latency = Histogram("daohub_webhook_attempt_seconds", "Duration of webhook delivery attempts",
                                 registry=registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def observe(self, outcome: str, latency_ms: float | None) -> None:
        self.attempts.labels(outcome).inc()
        if latency_ms is not None:
            self.latency.observe(latency_ms / 1000)


class GcMetrics:
    """Online garbage collection (hub/registry/gc.py): what each pass reviewed, kept and deleted."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter("daohub_gc_runs", "GC passes, by mode (run or dry_run)", ["mode"], registry=registry)
        self.reviewed = Counter("daohub_gc_reviewed", "Reviews GC passes took, by kind (manifests, blobs)",
                                ["kind"], registry=registry)
        self.kept = Counter("daohub_gc_kept", "Reviews that kept their manifest or blob (referenced, or too young)",
                            ["kind"], registry=registry)
        self.deleted = Counter("daohub_gc_deleted", "Rows and objects GC deleted, by kind (manifests, links, "
                               "blobs, orphans)", ["kind"], registry=registry)
        self.bytes_freed = Counter("daohub_gc_bytes_freed", "Blob bytes deleted from storage by GC",
                                   registry=registry)
        self.tenant_bytes_freed = Counter("daohub_gc_tenant_bytes_freed", "How much GC lowered each tenant's usage",
                                          ["tenant"], registry=registry)
        self.errors = Counter("daohub_gc_errors", "Reviews or sweep deletes that failed (retried later)",
                              registry=registry)
        self.duration = Histogram("daohub_gc_run_duration_seconds", "Duration of GC passes", registry=registry,
                                  buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
        self.last_run = Gauge("daohub_gc_last_run_timestamp_seconds", "When the last GC pass of this process ended",
                              registry=registry)
        self.backlog = Gauge("daohub_gc_backlog", "Reviews queued after this process's last pass, by kind "
                             "(manifest, link, blob) and whether they were due (past the grace period)",
                             ["kind", "due"], registry=registry)

    def observe_backlog(self, backlog: dict[str, int]) -> None:
        """GcStore.gc_backlog's answer: {kind}_queued and {kind}_due."""
        for key, count in backlog.items():
            kind, which = key.rsplit("_", 1)
            if which == "due":
                self.backlog.labels(kind, "true").set(count)
                self.backlog.labels(kind, "false").set(backlog[f"{kind}_queued"] - count)

    def observe(self, report) -> None:
        """Count a finished pass (a GcReport); dry runs count only as runs."""
        if not report.ran:
            return
        self.runs.labels("dry_run" if report.dry_run else "run").inc()
        if report.dry_run:
            return
        c = report.counts
        for kind in ("manifests", "blobs"):
            self.reviewed.labels(kind).inc(c[f"{kind}_reviewed"])
            self.kept.labels(kind).inc(c[f"{kind}_kept"])
        for kind, key in (("manifests", "manifests_deleted"), ("links", "links_deleted"),
                          ("blobs", "blobs_deleted"), ("orphans", "orphans_deleted")):
            self.deleted.labels(kind).inc(c[key])
        self.bytes_freed.inc(c["bytes_freed"])
        for tenant, freed in report.tenant_bytes_freed.items():
            self.tenant_bytes_freed.labels(tenant).inc(freed)
        self.errors.inc(len(report.errors))
        self.duration.observe(report.duration_seconds)
        self.last_run.set_to_current_time()
