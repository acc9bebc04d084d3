"""The audit export (docs/events.md, "Audit export"; issue 17, must-show 7), in-process over both
stores: every sink type against something real that receives it.

- syslog, UDP and TCP (RFC 6587 octet counting), into Debian's rsyslogd started by the tests on
  loopback ports (tests/helpers/rsyslog.py): rsyslog's own RFC 5424 parse of each message (PRI,
  facility, severity, version, timestamp, hostname, app-name, procid, msgid, structured data)
  and the tests' own parser on the raw bytes agree with the audit row;
- file and stdout JSON lines; HTTP POSTs of JSON arrays to a receiver of the tests' own on
  127.0.0.1, failing (500, forbidden destination) without moving the cursor, then catching up;
- the lease: one exporter of a sink at a time; the cursor only moves for its holder;
- PostgreSQL: a row whose transaction commits after a later row's is still exported (the
  (xid, id) cursor below the snapshot's xmin), exactly once.

The exporter is driven one batch at a time (Exporter.export_once): nothing waits on a clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import asyncpg
import pytest

from hub.config import AuditExportConfig, AuditSinkConfig, ConfigError, load_config
from hub.db import create_store
from hub.db.event_store import audit
from hub.events.audit_export import Exporter, SinkError
from hub.events.cloudevents import rfc3339
from tests.helpers.rsyslog import Rsyslog, available

from .receiver import Receiver

BOM = "\ufeff"
# RFC 5424 §6: HEADER SP STRUCTURED-DATA [SP MSG]; the tests' own reading of the raw message.
RFC5424 = re.compile(r"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S+) "
                     r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$",
                     re.S)
SD_PARAM = re.compile(r'(\S+?)="((?:[^"\\]|\\.)*)"')


def parse_sd(sd: str) -> tuple[str, dict]:
    assert sd.startswith("[") and sd.endswith("]"), sd
    inner = sd[1:-1]
    sd_id, _, rest = inner.partition(" ")
    return sd_id, {k: re.sub(r"\\(.)", r"\1", v) for k, v in SD_PARAM.findall(rest)}


def settings(*sinks: AuditSinkConfig, **overrides) -> AuditExportConfig:
    values = {"sinks": list(sinks), "batch_size": 2, "timeout_seconds": 2.0, "lease_seconds": 30.0,
              "backoff_base_seconds": 0.0, "backoff_max_seconds": 0.0}
    return AuditExportConfig(**(values | overrides))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/daohub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = create_store(url, pool_min_size=1, pool_max_size=4)
    await s.open()
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture(scope="module")
def rsyslog():
    if not available():
        pytest.fail("rsyslogd is missing: scripts/test.sh installs Debian's rsyslog")
    r = Rsyslog().start()
    yield r
    r.close()


ROWS = [("ada", "tenant.create", "tenant:team", {"display_name": "Team"}, "team"),
        ("robot$team+ci", "robot.create", 'robot:team+ci "quoted" ]bracket\\', None, "team"),
        ("ada", "user.create", "user:zoë", {"admin": False}, None)]


async def write_rows(store, rows=ROWS) -> None:
    for actor, action, target, detail, tenant in rows:
        await store._gc_tx(lambda tx, a=actor, b=action, c=target, d=detail, e=tenant: audit(tx, a, b, c, d, e))


async def drain(exporter: Exporter, sink) -> None:
    """export_once until the sink has every row written so far. On PostgreSQL a transaction open
    anywhere in the cluster (the fixtures' DROP DATABASE of the test before, say) holds the export
    back until it ends: the loop waits that out (bounded; not a timed assertion)."""
    total = await _committed(exporter.store)
    deadline = time.monotonic() + 60
    while await _exported(exporter.store, sink.spec.name) < total:
        assert time.monotonic() < deadline, "the export did not catch up"
        if await exporter.export_once(sink):
            await asyncio.sleep(0.05)


async def first_failure(exporter: Exporter, sink) -> None:
    """export_once until a batch is there to send (see drain): its failure is raised."""
    deadline = time.monotonic() + 60
    while await exporter.export_once(sink):
        assert time.monotonic() < deadline, "no batch to send"
        await asyncio.sleep(0.05)


async def _committed(store) -> int:
    return await store._gc_tx(lambda tx: tx.fetchval("SELECT COUNT(*) FROM audit_log"), rollback=True)


async def _exported(store, name) -> int:
    return next((c.exported for c in await store.audit_export_cursors() if c.sink == name), 0)


async def cursor_of(store, name):
    return next(c for c in await store.audit_export_cursors() if c.sink == name)


async def expected(store) -> list[dict]:
    rows = await store.audit_export_batch((0, 0), 1000)
    return [{"id": r.id, "at": rfc3339(r.at), "actor": r.actor, "action": r.action, "target": r.target,
             "tenant": r.tenant, "detail": json.loads(r.detail) if r.detail else None} for r in rows]


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_syslog_lines_reach_rsyslog_with_every_rfc5424_field(tmp_path, rsyslog, protocol):
    s = create_store(f"sqlite:///{tmp_path}/daohub.db")
    await s.open()
    await s.migrate()
    try:
        await write_rows(s)
        spec = AuditSinkConfig(name=f"syslog-{protocol}", type="syslog", protocol=protocol,
                               address=f"127.0.0.1:{rsyslog.udp_port if protocol == 'udp' else rsyslog.tcp_port}",
                               facility=13, hostname="hub-1.example", app_name="daohub")
        exporter = Exporter(s, settings(spec), [])
        before = len(rsyslog.messages())
        await drain(exporter, exporter.sinks[0])
        await exporter.stop()
        want = await expected(s)
        got = rsyslog.wait_for(lambda m: len(m) >= before + len(want))[before:]
        assert len(got) == len(want)
        assert {g["inputname"] for g in got} == {"imudp" if protocol == "udp" else "imtcp"}
        for g, w in zip(got, want, strict=True):
            # rsyslog's own RFC 5424 parse
            assert (g["pri"], g["syslogfacility"], g["syslogseverity"]) == (str(13 * 8 + 6), "13", "6")
            assert g["protocol-version"] == "1"
            assert (g["hostname"], g["app-name"], g["procid"], g["msgid"]) == ("hub-1.example", "daohub",
                                                                             str(os.getpid()), w["action"])
            assert g["timereported"].startswith(w["at"][:19])  # rsyslog re-renders the fraction and zone
            assert json.loads(g["msg"].lstrip(BOM)) == w
            # the tests' own parse of the raw bytes
            m = RFC5424.match(g["rawmsg"])
            assert m, g["rawmsg"]
            assert (m["pri"], m["version"], m["timestamp"], m["msgid"]) == ("110", "1", w["at"], w["action"])
            assert m["msg"].startswith(BOM) and json.loads(m["msg"][1:]) == w
            sd_id, params = parse_sd(m["sd"])
            assert sd_id == "daohub@32473"
            assert params == {"id": str(w["id"]), "actor": w["actor"], "action": w["action"], "target": w["target"],
                              **({"tenant": w["tenant"]} if w["tenant"] else {})}
            assert g["structured-data"] == m["sd"]
        assert (await cursor_of(s, spec.name)).exported == len(want)
    finally:
        await s.close()


async def test_file_and_stdout_sinks_write_each_row_once_as_json_lines(store, tmp_path, capsysbinary):
    path = tmp_path / "audit.jsonl"
    exporter = Exporter(store, settings(AuditSinkConfig(name="file", type="file", path=str(path)),
                                        AuditSinkConfig(name="out", type="stdout")), [])
    await write_rows(store)
    for sink in exporter.sinks:
        await drain(exporter, sink)
    await write_rows(store, ROWS[:1])  # later rows follow on, nothing is sent twice
    for sink in exporter.sinks:
        await drain(exporter, sink)
    await exporter.stop()
    want = await expected(store)
    assert len(want) == 4
    assert [json.loads(line) for line in path.read_text().splitlines()] == want
    assert [json.loads(line) for line in capsysbinary.readouterr().out.decode().splitlines()] == want
    assert {c.sink: (c.exported, c.lease_owner) for c in await store.audit_export_cursors()} == {
        "file": (4, None), "out": (4, None)}  # stop() gave the leases up


async def test_the_http_sink_retries_a_failing_receiver_without_moving_its_cursor(store):
    receiver = Receiver()
    await receiver.start()
    try:
        spec = AuditSinkConfig(name="siem", type="http", url=receiver.url)
        exporter = Exporter(store, settings(spec), ["127.0.0.0/8"])
        await write_rows(store)
        receiver.mode = "fail"
        with pytest.raises(SinkError, match="HTTP 500"):
            await first_failure(exporter, exporter.sinks[0])
        assert (await cursor_of(store, "siem")).position == (0, 0)
        receiver.mode = "ok"
        await drain(exporter, exporter.sinks[0])
        await exporter.stop()
        accepted = [json.loads(r.body) for r in receiver.accepted()]
        assert [len(b) for b in accepted] == [2, 1]  # batch_size 2
        assert [row for batch in accepted for row in batch] == await expected(store)
        first = receiver.received[0]
        assert first.headers["Content-Type"].startswith("application/json")
        assert receiver.accepted()[0].headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    finally:
        await receiver.stop()


async def test_the_http_sink_keeps_to_the_webhook_destination_rules(store):
    receiver = Receiver()
    await receiver.start()
    try:
        exporter = Exporter(store, settings(AuditSinkConfig(name="siem", type="http", url=receiver.url)), [])
        await write_rows(store, ROWS[:1])
        with pytest.raises(SinkError, match="forbidden destination"):
            await first_failure(exporter, exporter.sinks[0])
        await exporter.stop()
        assert receiver.received == [] and (await cursor_of(store, "siem")).exported == 0
    finally:
        await receiver.stop()


async def test_one_exporter_holds_a_sink_and_only_it_moves_the_cursor(store, tmp_path):
    spec = AuditSinkConfig(name="file", type="file", path=str(tmp_path / "a.jsonl"))
    a = Exporter(store, settings(spec), [], owner="a")
    b = Exporter(store, settings(spec), [], owner="b")
    assert (await store.audit_export_claim("file", "a", 30)) is not None
    assert (await store.audit_export_claim("file", "b", 30)) is None  # a's lease is live
    assert not await store.audit_export_advance("file", "b", (0, 99), 1, 30)
    await store.audit_export_release("file", "a")
    assert (await store.audit_export_claim("file", "b", 30)) is not None
    assert (await store.audit_export_claim("file", "a", 30)) is None
    assert (await store.audit_export_claim("file", "a", -1)) is None
    # an expired lease is free for the taking
    assert (await store.audit_export_claim("file", "b", -1)) is not None
    assert (await store.audit_export_claim("file", "a", 30)) is not None
    await a.stop()
    await b.stop()


async def test_postgres_a_row_committed_late_is_exported_once(postgres_url, tmp_path):
    s = create_store(postgres_url, pool_min_size=1, pool_max_size=4)
    await s.open()
    await s.migrate()
    late = await asyncpg.connect(postgres_url)
    try:
        path = tmp_path / "audit.jsonl"
        exporter = Exporter(s, settings(AuditSinkConfig(name="file", type="file", path=str(path))), [])
        tx = late.transaction()
        await tx.start()  # takes its id first, commits last
        await late.execute("INSERT INTO audit_log (at, actor, action, target) VALUES (0, 'late', 'x.late', 't')")
        await write_rows(s)
        for _ in range(3):
            await exporter.export_once(exporter.sinks[0])
        assert not path.exists()  # held back behind the open transaction, which may still write before them
        await tx.commit()
        await write_rows(s, ROWS[:1])
        await drain(exporter, exporter.sinks[0])
        await exporter.stop()
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert sorted(r["id"] for r in got) == sorted(r["id"] for r in await expected(s))
        assert len(got) == 5 and len({r["id"] for r in got}) == 5
        assert got[0]["action"] == "x.late"
    finally:
        await late.close()
        await s.close()


def test_sinks_are_checked_at_start(tmp_path):
    def load(sinks) -> None:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({"audit_export": {"sinks": sinks}}))
        load_config(str(cfg), environ={})

    load([{"name": "a", "type": "stdout"}, {"name": "b", "type": "syslog", "address": "127.0.0.1:514",
                                            "protocol": "tcp"}])
    bad = [([{"name": "a", "type": "kafka"}], "type: one of"),
           ([{"name": "a", "type": "stdout"}, {"name": "a", "type": "stdout"}], "used twice"),
           ([{"name": "", "type": "stdout"}], "name: required"),
           ([{"name": "a", "type": "file"}], "takes path"),
           ([{"name": "a", "type": "file", "path": str(tmp_path / "no" / "x")}], "does not exist"),
           ([{"name": "a", "type": "syslog", "address": "nope"}], "HOST:PORT"),
           ([{"name": "a", "type": "syslog", "address": "h:514", "protocol": "sctp"}], "udp or tcp"),
           ([{"name": "a", "type": "syslog", "address": "h:514", "facility": 24}], "0..23"),
           ([{"name": "a", "type": "http", "url": "ftp://x"}], "http:// or https://"),
           ([{"name": "a", "type": "stdout", "colour": "red"}], "unknown configuration key")]
    for sinks, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(sinks)
