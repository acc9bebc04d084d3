"""Webhook delivery against a real receiver on 127.0.0.1, over both stores: signed CloudEvents
that verify with the documented recipe (both secrets during a rotation), retries while the
receiver fails, hangs or is down and exactly one accepted delivery per idempotency key after it
recovers, dead letters and their redelivery, redirects not followed, and destinations refused at
delivery time (an IP literal, and a name that resolves elsewhere by then: DNS rebinding).

The worker is driven one batch at a time (Deliverer.run_once) with no backoff, so nothing here
waits on a clock."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from hub.config import WebhooksConfig
from hub.db import create_store
from hub.db.base import MetadataStore
from hub.db.event_store import emit
from hub.events.delivery import Deliverer, backoff
from hub.events.netguard import ForbiddenDestination, address_allowed, check_url, networks
from tests.db.test_store import manifest

from .receiver import Receiver, verify

SECRET = "a-secret-of-16+chars"


def settings(**overrides) -> WebhooksConfig:
    values = {"allowed_networks": ["127.0.0.0/8"], "timeout_seconds": 0.5, "max_attempts": 3,
              "backoff_base_seconds": 0.0, "backoff_max_seconds": 0.0, "lease_seconds": 30.0, "concurrency": 16,
              "max_response_bytes": 1024}
    return WebhooksConfig(**(values | overrides))


class FlippingResolver:
    """Answers `public` for every name until flipped, then 127.0.0.1 (a rebinding attacker's DNS)."""

    def __init__(self, public: str = "93.184.216.34"):
        self.answer = public

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.answer, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0}]

    async def close(self):
        pass


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/daohub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = create_store(url, pool_min_size=1, pool_max_size=4)
    await s.open()
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
def fresh(receiver):
    receiver.mode = "ok"
    receiver.received.clear()
    return receiver


@contextlib.asynccontextmanager
async def _worker(store, resolver=None, **overrides):
    deliverer = Deliverer(store, settings(**overrides), resolver=resolver)
    await deliverer.open()
    try:
        yield deliverer
    finally:
        await deliverer.close()


async def _deliver_all(store, resolver=None, **overrides) -> None:
    async with _worker(store, resolver, **overrides) as deliverer:
        await _drain(deliverer)


async def _one_event(store, receiver, salt: str, mode: str = "ok"):
    """A subscription to `receiver` (answering as `mode`) and one event for it."""
    hook = await _subscribe(store, receiver.url)
    await store.put_manifest("acme/app", manifest(salt=salt), [])
    receiver.mode = mode
    return hook


async def _drain(deliverer, rounds: int = 50) -> None:
    for _ in range(rounds):
        if not await deliverer.run_once():
            return
    raise AssertionError("deliveries kept coming")


async def _subscribe(store, url, tenant="acme", **extra):
    return await store.create_webhook(tenant=tenant, name="t", url=url, event_types=extra.get("types", []),
                                      repositories=[], secret=SECRET, actor="alice")


async def test_a_push_tag_move_and_delete_arrive_signed_as_cloudevents(store, fresh):
    hook = await _subscribe(store, fresh.url)
    with MetadataStore.acting_as("alice"):
        one, two = manifest(salt="1"), manifest(salt="2")
        await store.put_manifest("acme/app", one, ["latest"])
        await store.put_manifest("acme/app", two, ["latest"])
        await store.delete_manifest("acme/app", one.digest)
    await _deliver_all(store)
    types = [r.event["type"] for r in fresh.received]
    assert types == ["io.daohub.manifest.pushed", "io.daohub.tag.pushed", "io.daohub.manifest.pushed",
                     "io.daohub.tag.moved", "io.daohub.manifest.deleted"]
    for r in fresh.received:
        assert verify(SECRET, r.headers, r.body)
        assert not verify("another-secret-of-16", r.headers, r.body)
        assert r.headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        assert r.headers["Idempotency-Key"] == r.event["id"] == r.headers["DaoHub-Event-Id"]
        assert r.event["specversion"] == "1.0" and r.event["data"]["actor"] == "alice"
    assert fresh.received[3].event["data"]["previous_digest"] == one.digest
    log = await store.webhook_deliveries(hook.id)
    assert {d.state for d in log} == {"delivered"} and all(d.last_status == 204 for d in log)
    assert all(d.log[0].latency_ms is not None and d.log[0].latency_ms > 0 for d in log)


async def test_during_a_rotation_both_secrets_sign(store, fresh):
    hook = await _subscribe(store, fresh.url)
    await store.rotate_webhook_secret(hook.id, "the-new-secret-16+", 2 ** 40, "alice")
    await store.put_manifest("acme/app", manifest(salt="r"), [])
    await _deliver_all(store)
    (got,) = fresh.received
    assert verify(SECRET, got.headers, got.body) and verify("the-new-secret-16+", got.headers, got.body)
    assert got.headers["DaoHub-Signature"].count("v1=") == 2


@pytest.mark.parametrize("trouble", ["fail", "hang", "down"])
async def test_events_queue_while_the_receiver_is_in_trouble_and_arrive_once_after(store, fresh, trouble):
    await _subscribe(store, fresh.url)
    for i in range(5):
        await store.put_manifest("acme/app", manifest(salt=f"{trouble}{i}"), [])
    async with _worker(store, max_attempts=100) as deliverer:
        if trouble == "down":
            await fresh.stop()
        else:
            fresh.mode = trouble
        for _ in range(2):  # two failed attempts each
            assert await deliverer.run_once() == 5
        assert await store.webhook_backlog() == {"pending": 5, "delivered": 0, "dead": 0}
        if trouble == "down":
            await fresh.start()
        fresh.mode = "ok"
        await _drain(deliverer)
    keys = [r.headers["Idempotency-Key"] for r in fresh.accepted()]
    assert len(keys) == 5 and len(set(keys)) == 5
    failed = [r for r in fresh.received if r.answered != 204]
    assert len(failed) == (0 if trouble == "down" else 10)
    rows = await store.events_after(0)
    assert sorted(keys) == sorted(e.id for e in rows)
    (hook,) = await store.webhooks("acme")
    errors = {a.error.split(":")[0].split(" after")[0] for d in await store.webhook_deliveries(hook.id)
              for a in d.log if a.error}
    assert errors == {"fail": {"HTTP 500"}, "hang": {"timed out"}, "down": {"connection failed"}}[trouble]
    if trouble == "fail":  # the body read stops at max_response_bytes, the log keeps 200 characters
        assert all(len(a.error) <= 210 for d in await store.webhook_deliveries(hook.id) for a in d.log if a.error)


async def test_dead_letters_are_logged_and_redelivery_works(store, fresh):
    hook = await _one_event(store, fresh, "d", "fail")
    async with _worker(store, max_attempts=2) as deliverer:
        await _drain(deliverer)
        (dead,) = await store.webhook_deliveries(hook.id, state="dead")
        assert (dead.attempts, dead.last_status, [a.status for a in dead.log]) == (2, 500, [500, 500])
        assert dead.last_error.startswith("HTTP 500: receiver broke")
        fresh.mode = "ok"
        assert await store.webhook_redeliver(hook.id, dead.id, "alice") == "dead"
        await _drain(deliverer)
    (done,) = await store.webhook_deliveries(hook.id)
    assert (done.state, done.attempts, [a.status for a in done.log]) == ("delivered", 3, [500, 500, 204])
    assert len(fresh.accepted()) == 1


async def test_redirects_are_not_followed(store, fresh):
    hook = await _one_event(store, fresh, "x", "redirect")
    await _deliver_all(store, max_attempts=1)
    (dead,) = await store.webhook_deliveries(hook.id)
    assert (dead.state, dead.last_status) == ("dead", 307)
    assert "redirects are not followed" in dead.last_error and len(fresh.received) == 1


async def test_a_forbidden_destination_is_refused_at_delivery_time(store, fresh):
    # Loopback allowed when the subscription was made, and no more now (the worker's settings).
    literal = await _one_event(store, fresh, "f")
    await _deliver_all(store, allowed_networks=[])
    (dead,) = await store.webhook_deliveries(literal.id)
    assert dead.state == "dead" and dead.last_error.startswith("forbidden destination: 127.0.0.1")
    assert fresh.received == []


async def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery_time(store, fresh):
    dns = FlippingResolver()
    url = f"http://hooks.example.test:{fresh.port}/hook"
    await check_url(url, (), dns)  # public at creation: accepted
    hook = await _subscribe(store, url)
    await store.put_manifest("acme/app", manifest(salt="dns"), [])
    dns.answer = "127.0.0.1"
    with pytest.raises(ForbiddenDestination):
        await check_url(url, (), dns)
    await _deliver_all(store, dns, allowed_networks=[])
    (dead,) = await store.webhook_deliveries(hook.id)
    assert dead.state == "dead" and "resolves to 127.0.0.1" in dead.last_error and fresh.received == []
    # With loopback allowed, the same name is delivered to (the receiver really is there).
    assert await store.webhook_redeliver(hook.id, dead.id, "alice") == "dead"
    await _deliver_all(store, dns)
    assert len(fresh.accepted()) == 1


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.216.34", True), ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("2606:4700::1111", True),
])
def test_only_global_addresses_are_allowed_by_default(address, allowed):
    assert address_allowed(address, ()) is allowed
    assert address_allowed(address, networks(["0.0.0.0/0", "::/0"])) is True


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "http:///x", "http://[::ffff:6.21.1.25]@/", "http://user:pw@93.184.216.34/",
                                 "http://93.184.216.34/#frag", "x" * 3000, "http://127.0.0.1/",
                                 "http://[::1]:80/", "http://169.254.169.254/latest/meta-data"])
async def test_bad_or_forbidden_urls_are_refused_at_creation(url):
    with pytest.raises((ValueError, ForbiddenDestination)):
        await check_url(url, ())


def test_backoff_doubles_to_its_cap_with_jitter():
    s = settings(backoff_base_seconds=5.0, backoff_max_seconds=60.0)
    assert [backoff(s, n, rand=1.0) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    assert [backoff(s, n, rand=0.0) for n in (1, 2, 5)] == [2.5, 5, 30]


async def test_two_replicas_deliver_a_thousand_events_once_each(postgres_url, fresh):
    """Two stores with pools of their own on one PostgreSQL (two replicas), each with a worker
    running its loop: every event is accepted exactly once, and both replicas took a share."""
    stores = [create_store(postgres_url, pool_min_size=1, pool_max_size=8) for _ in range(2)]
    for s in stores:
        await s.open()
    await stores[0].migrate()
    try:
        await _subscribe(stores[0], fresh.url)

        async def many(tx):
            for i in range(1000):
                await emit(tx, "io.daohub.tag.pushed", repository="acme/app", subject=f"acme/app:{i}", data={})

        await stores[0]._gc_tx(many)
        # A generous attempt timeout: an answer later than the test default's 0.5 s counts as a
        # failure and is retried, a documented duplicate (at least once) that this test, about two
        # replicas never sharing a delivery, must not mistake for one (8 of 1,000 were, once, in a
        # CI run).
        async with _worker(stores[0], poll_interval_seconds=0.01, timeout_seconds=10.0) as one, \
                _worker(stores[1], poll_interval_seconds=0.01, timeout_seconds=10.0) as two:
            tasks = [asyncio.create_task(w.run()) for w in (one, two)]
            await fresh.wait_for(lambda: len(fresh.accepted()) >= 1000)
            for worker, task in zip((one, two), tasks, strict=True):
                await worker.stop(task)  # what is in flight is recorded first
        keys = [r.headers["Idempotency-Key"] for r in fresh.accepted()]
        assert len(keys) == 1000 and len(set(keys)) == 1000
        assert await stores[0].webhook_backlog() == {"pending": 0, "delivered": 1000, "dead": 0}
        (hook,) = await stores[0].webhooks("acme")
        workers = {d.log[0].owner for d in await stores[0].webhook_deliveries(hook.id, limit=1000)}
        assert workers == {one.owner, two.owner}
    finally:
        for s in stores:
            await s.close()
