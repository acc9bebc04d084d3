"""The audit export: serve streams the audit log to the sinks of `audit_export.sinks`
(docs/events.md, "Audit export").

Each sink has its own task and its own durable cursor (hub/db/audit_export_store.py). A task
leases its sink (one process of all replicas exports it), reads the rows after the cursor,
sends them, and only then moves the cursor: a process killed in between sends that batch again
when it (or another replica) takes the sink up, so a sink gets every row at least once and
duplicates only around a crash or a lease that ran out mid-send. Receivers deduplicate by the
row's `id`. A sink that fails is retried with backoff and jitter; it holds up only itself.

Formats: JSON lines (file, stdout), RFC 5424 syslog over UDP or TCP (RFC 6587 octet counting),
and HTTP POSTs of JSON arrays under webhooks' destination rules (hub/events/netguard.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import sys
import time
import uuid
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from ..background import stop_if_cancelled
from ..db.base import MetadataStore
from .cloudevents import rfc3339
from .netguard import ForbiddenDestination, GuardedResolver, check_literal, networks

log = logging.getLogger("daohub.audit_export")

SD_ID = "daohub@32473"  # 32473: the enterprise number RFC 5612 reserves for documentation
SEVERITY = 6  # informational
USER_AGENT = "DaoHub-Audit-Export/1"


def record(row: Any) -> dict:
    """An audit row as exported (the admin API's shape, `GET /api/v1/audit`)."""
    detail = None
    if row.detail:
        try:
            detail = json.loads(row.detail)
        except ValueError:
            detail = {"text": row.detail}
        if not isinstance(detail, dict):
            detail = {"value": detail}
    return {"id": row.id, "at": rfc3339(row.at), "actor": row.actor, "action": row.action, "target": row.target,
            "tenant": row.tenant, "detail": detail}


def json_line(row: Any) -> bytes:
    return json.dumps(record(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _sd_value(value: str) -> str:
    """An RFC 5424 PARAM-VALUE: '"', '\\' and ']' escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` characters, '-' if empty."""
    kept = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return kept or "-"


def syslog_message(row: Any, *, facility: int, hostname: str, app_name: str, procid: str) -> bytes:
    """One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`, with
    MSGID the action, the row's fields as structured data, and the JSON record as MSG."""
    params = [("id", str(row.id)), ("actor", row.actor), ("action", row.action), ("target", row.target)]
    if row.tenant is not None:
        params.append(("tenant", row.tenant))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params) + "]"
    head = (f"<{facility * 8 + SEVERITY}>1 {rfc3339(row.at)} {_header_field(hostname, 255)} "
            f"{_header_field(app_name, 48)} {_header_field(procid, 128)} {_header_field(row.action, 32)} {sd} ")
    body = json.dumps(record(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return head.encode() + b"\xef\xbb\xbf" + body.encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`."""
    return str(len(message)).encode() + b" " + message


class Sink:
    """Sends a batch or raises; `close` frees what it holds."""

    def __init__(self, spec: Any, settings: Any):
        self.spec = spec
        self.settings = settings

    async def send(self, rows: list) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class FileSink(Sink):
    """JSON lines appended to a file and fsynced before the cursor moves."""

    async def send(self, rows: list) -> None:
        data = b"".join(json_line(r) for r in rows)

        def write() -> None:
            with open(self.spec.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        await asyncio.to_thread(write)


class StdoutSink(Sink):
    """JSON lines on serve's standard output (its logs go to standard error)."""

    async def send(self, rows: list) -> None:
        out = sys.stdout.buffer
        out.write(b"".join(json_line(r) for r in rows))
        out.flush()


class SyslogSink(Sink):
    """RFC 5424 over UDP (one datagram per row) or TCP (one connection kept, octet counting)."""

    def __init__(self, spec: Any, settings: Any):
        super().__init__(spec, settings)
        host, _, port = spec.address.rpartition(":")  # HOST:PORT, checked by hub.config at start
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self.hostname = spec.hostname or socket.gethostname()
        self.procid = str(os.getpid())
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None

    def _messages(self, rows: list) -> list[bytes]:
        return [syslog_message(r, facility=self.spec.facility, hostname=self.hostname, app_name=self.spec.app_name,
                               procid=self.procid) for r in rows]

    async def send(self, rows: list) -> None:
        messages = self._messages(rows)
        timeout = self.settings.timeout_seconds
        if self.spec.protocol == "udp":
            if self._udp is None:
                loop = asyncio.get_running_loop()
                self._udp, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self.host, self.port)), timeout)
            for m in messages:
                self._udp.sendto(m)
            return
        try:
            if self._writer is None:
                _, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
            self._writer.write(b"".join(octet_counted(m) for m in messages))
            await asyncio.wait_for(self._writer.drain(), timeout)
        except BaseException:
            await self.close()  # a fresh connection for the retry
            raise

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1)
            except (OSError, TimeoutError):
                pass


class HttpSink(Sink):
    """One POST per batch, a JSON array of records; a 2xx answer is success. Webhooks' destination
    rules (webhooks.allowed_networks) on every connection, no redirects, a timeout."""

    def __init__(self, spec: Any, settings: Any, allowed_networks: list[str],
                 resolver: AbstractResolver | None = None):
        super().__init__(spec, settings)
        self.allowed = networks(allowed_networks)
        self.url = URL(spec.url)
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def send(self, rows: list) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allowed, self._resolver),
                                             use_dns_cache=False, keepalive_timeout=15)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  headers={"User-Agent": USER_AGENT})
        check_literal(self.url, self.allowed)
        body = json.dumps([record(r) for r in rows], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": f"{self.spec.name}:{rows[0].id}-{rows[-1].id}"}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        async with self._session.post(self.url, data=body, headers=headers, allow_redirects=False,
                                      timeout=timeout) as response:
            snippet = await response.content.read(200)
            if not 200 <= response.status < 300:
                raise SinkError(f"HTTP {response.status}: {snippet.decode('utf-8', 'replace').strip()}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SinkError(Exception):
    pass


def make_sink(spec: Any, settings: Any, allowed_networks: list[str], resolver: AbstractResolver | None = None) -> Sink:
    if spec.type == "file":
        return FileSink(spec, settings)
    if spec.type == "stdout":
        return StdoutSink(spec, settings)
    if spec.type == "syslog":
        return SyslogSink(spec, settings)
    return HttpSink(spec, settings, allowed_networks, resolver)


def backoff(settings: Any, failures: int) -> float:
    delay = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** max(0, failures - 1))
    return delay * (0.5 + 0.5 * random.random())


class Exporter:
    """One task per sink; `run` until `stop`."""

    def __init__(self, store: Any, settings: Any, allowed_networks: list[str], *,
                 resolver: AbstractResolver | None = None, owner: str | None = None):
        self.store = store
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sinks = [make_sink(s, settings, allowed_networks, resolver) for s in settings.sinks]
        self._stopping = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(s), name=f"audit-export-{s.spec.name}") for s in self.sinks]

    async def stop(self) -> None:
        """No new batches; the one in flight is finished (within the send timeout), the leases given up."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.settings.timeout_seconds + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self.sinks:
            await sink.close()
            try:
                await self.store.audit_export_release(sink.spec.name, self.owner)
            except Exception:
                log.exception("releasing audit sink %s failed (it is free once its lease runs out)", sink.spec.name)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _run(self, sink: Sink) -> None:
        with MetadataStore.background():
            failures = 0
            while not self._stopping:
                try:
                    wait = await self.export_once(sink)
                    failures = 0
                except Exception as exc:
                    stop_if_cancelled(exc)
                    failures += 1
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    delay = backoff(self.settings, failures)
                    log.warning("audit sink %s failed (%s); retrying in %.1f s", sink.spec.name, error, delay)
                    try:
                        await self.store.audit_export_failed(sink.spec.name, self.owner, error)
                    except Exception as inner:
                        stop_if_cancelled(inner)
                    wait = delay
                if wait and not self._stopping:
                    await self._pause(wait)

    async def export_once(self, sink: Sink) -> float:
        """Claim the sink, send one batch, move the cursor. How long to wait before the next (0:
        there is more at once)."""
        cursor = await self.store.audit_export_claim(sink.spec.name, self.owner, self.settings.lease_seconds)
        if cursor is None:  # another process exports it; look again when its lease may have run out
            return min(self.settings.poll_interval_seconds * 5, self.settings.lease_seconds / 2)
        rows = await self.store.audit_export_batch(cursor.position, self.settings.batch_size)
        if not rows:
            return self.settings.poll_interval_seconds
        try:
            await sink.send(rows)
        except ForbiddenDestination as exc:
            raise SinkError(f"forbidden destination: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise SinkError(f"connection failed: {exc.os_error or exc}") from None
        if not await self.store.audit_export_advance(sink.spec.name, self.owner, rows[-1].position, len(rows),
                                                     self.settings.lease_seconds):
            log.info("audit sink %s was taken over by another process during a batch", sink.spec.name)
            return self.settings.poll_interval_seconds
        return 0.0 if len(rows) == self.settings.batch_size else self.settings.poll_interval_seconds
