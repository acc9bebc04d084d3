"""server_state, over SQLite and PostgreSQL: named values the server decides once; and the first
start's seed catalog decision built on it, once across two PostgreSQL replicas starting together."""

from __future__ import annotations

import asyncio

from hub.cli import seed as seed_catalog
from hub.app import open_registry
from hub.config import load_config


async def test_a_value_is_absent_then_set_then_replaced(store):
    assert await store.server_state("x.y") is None
    await store.set_server_state("x.y", "one")
    await store.set_server_state("other", "two")
    assert await store.server_state("x.y") == "one"
    await store.set_server_state("x.y", "three")
    assert (await store.server_state("x.y"), await store.server_state("other")) == ("three", "two")


def _config(tmp_path, url: str, **appstore):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "database": {"url": url, "pool_min_size": 1, "pool_max_size": 4},
        "auth": {"enabled": False}, "appstore": appstore})


async def test_two_replicas_starting_together_publish_the_seed_catalog_once(tmp_path, postgres_url, monkeypatch):
    published = []
    real = seed_catalog.publish_seed_catalog

    async def counted(registry, config, tenant, **options):
        published.append(tenant)
        await asyncio.sleep(0.2)  # the other replica arrives while this one still publishes
        return await real(registry, config, tenant, **options)

    monkeypatch.setattr(seed_catalog, "publish_seed_catalog", counted)
    config = _config(tmp_path, postgres_url)
    async with open_registry(config) as one, open_registry(config) as two:
        states = await asyncio.gather(seed_catalog.seed_on_first_start(one, config),
                                      seed_catalog.seed_on_first_start(two, config))
        assert states == ["published", "published"] and published == ["apps"]
        repositories = await one.store.list_repositories(100, None)
        assert {name.split("/")[1] for name in repositories} == {p.name for p in seed_catalog.seed_folders()}
        assert await one.store.public_repositories(repositories) == set(repositories)
        # Later starts read the decision and publish nothing, even after every seed app is gone.
        for name in repositories:
            await one.store.delete_repository(name)
        assert await seed_catalog.seed_on_first_start(two, config) == "published"
    assert published == ["apps"]


async def test_a_start_that_died_while_publishing_is_finished_by_the_next(tmp_path, postgres_url):
    config = _config(tmp_path, postgres_url)
    async with open_registry(config) as registry:
        await registry.store.set_server_state(seed_catalog.STATE, "publishing")
        await registry.store.create_tenant("apps")  # as far as the first one got
        assert await seed_catalog.seed_on_first_start(registry, config) == "published"
        assert len(await registry.store.list_repositories(100, None)) == len(seed_catalog.seed_folders())


async def test_the_decision_is_taken_once_whatever_the_switch_says_later(tmp_path, postgres_url):
    config = _config(tmp_path, postgres_url, seed_on_first_start=False)
    async with open_registry(config) as registry:
        assert await seed_catalog.seed_on_first_start(registry, config) == "off"
        switched_on = _config(tmp_path, postgres_url, seed_on_first_start=True)
        assert await seed_catalog.seed_on_first_start(registry, switched_on) == "off"
        assert await registry.store.list_repositories(10, None) == []
        assert await registry.store.list_tenants(10, None) == []
