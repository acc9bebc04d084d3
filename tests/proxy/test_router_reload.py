"""The Router's union of config and stored upstreams: config wins a clash, the store's change
counter is read at most once per refresh interval, and a failing store keeps the last set."""

from __future__ import annotations

import logging

from hub.config import UpstreamConfig
from hub.proxy.routing import API, CONFIG, Router, Upstream

CONFIGURED = Upstream.from_config(UpstreamConfig(name="docker.io", url="https://registry-1.docker.io",
                                                 aliases=["index.docker.io"]))


def _stored(name: str, *aliases: str) -> Upstream:
    return Upstream.from_config(UpstreamConfig(name=name, url=f"https://{name}", aliases=list(aliases)), source=API)


class Store:
    def __init__(self) -> None:
        self.version = 0
        self.upstreams: list[Upstream] = []
        self.reads = 0
        self.fail = False

    async def read_version(self) -> int:
        self.reads += 1
        if self.fail:
            raise OSError("store down")
        return self.version

    async def read_upstreams(self) -> list[Upstream]:
        return list(self.upstreams)

    def change(self, *upstreams: Upstream) -> None:
        self.upstreams = list(upstreams)
        self.version += 1


async def _no_tenant(name: str) -> bool:
    return False


def _router(store: Store, refresh_seconds: float, changes: list | None = None) -> Router:
    return Router([CONFIGURED], "docker.io", _no_tenant, stored=store.read_upstreams, version=store.read_version,
                  refresh_seconds=refresh_seconds, on_change=changes.append if changes is not None else None)


async def test_config_wins_a_clash_and_the_rest_is_the_union(caplog):
    store = Store()
    store.change(_stored("ghcr.io", "ghcr.example"), _stored("clash", "index.docker.io"), _stored("docker.io"))
    changes: list = []
    router = _router(store, 0, changes)
    with caplog.at_level(logging.WARNING, "daohub.proxy"):
        await router.refresh(force=True)
    assert sorted(router.upstreams) == ["docker.io", "ghcr.io"]
    assert router.upstreams["docker.io"].source == CONFIG and router.by_host("ghcr.example").source == API
    assert "'clash' from the metadata store is ignored" in caplog.text
    assert changes == [router.upstreams]
    target = await router.route("ghcr.io/org/app")
    assert (target.upstream.name, target.remote, target.via) == ("ghcr.io", "org/app", "prefix")


async def test_the_counter_is_read_once_per_interval_and_a_reload_only_on_change():
    store = Store()
    changes: list = []
    router = _router(store, 3600, changes)
    await router.refresh(force=True)
    for _ in range(5):
        await router.route("library/alpine")
    assert store.reads == 1 and len(changes) == 1
    store.change(_stored("quay.io"))
    assert (await router.route("quay.io/org/app")).upstream.name == "docker.io"  # not seen yet
    router.invalidate()
    assert (await router.route("quay.io/org/app")).upstream.name == "quay.io"
    await router.refresh(force=True)
    assert store.reads == 3 and len(changes) == 2  # same counter: no second reload


async def test_a_failing_store_keeps_the_last_set(caplog):
    store = Store()
    store.change(_stored("quay.io"))
    router = _router(store, 0)
    await router.refresh(force=True)
    store.fail = True
    with caplog.at_level(logging.WARNING, "daohub.proxy"):
        assert (await router.route("quay.io/org/app")).upstream.name == "quay.io"
    assert "could not reload the upstreams" in caplog.text and "store down" in caplog.text
