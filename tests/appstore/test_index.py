"""The catalog index: kept by the registry's push path, over SQLite and PostgreSQL.

A pushed app artifact is listed at once; every way its tag or manifest goes (an OCI delete by
tag or digest, the admin API, a repository delete) unlists it; a tag moved to another manifest
never shows stale data."""

from __future__ import annotations

import json

from appstore import artifact
from hub.app import create_app
from hub.config import load_config
from hub.keys import STORE
from tests.registry.conftest import DATABASE_SETUP
from tests.registry.conftest import Repo, error_code

from . import hubs
from .hubs import PNG, get_json, headers, packed, push, v2_auth

open_hub, auth_hub = hubs.open_hub, hubs.auth_hub  # the fixtures


async def versions(client, repository: str) -> list[tuple[str, str]]:
    rows = await client.server.app[STORE].app_versions_of(repository)
    return [(r.tag, r.version) for r in rows]


async def test_push_indexes_at_once_and_delete_by_tag_unlists(open_hub):
    art = packed("web", "1.0.0", with_icon=True)
    await push(open_hub, "team/web", "1.0.0", art)
    record = await open_hub.server.app[STORE].get_app_version("team/web", "1.0.0")
    assert record is not None and record.digest == art.digest and record.title == "Web server"
    assert record.categories == ("web",) and record.app_key == "web" and not record.deprecated
    assert record.icon_media_type == "image/png" and record.icon_digest == art.blobs[-1].digest
    assert json.loads(record.document)["metadata"]["version"]["version"] == "1.0.0"
    status, body = await get_json(open_hub, "/api/v1/appstore/apps")
    assert status == 200 and [a["repository"] for a in body["items"]] == ["team/web"]

    r = await open_hub.delete("/v2/team/web/manifests/1.0.0")
    assert r.status == 202
    assert await versions(open_hub, "team/web") == []
    status, body = await get_json(open_hub, "/api/v1/appstore/apps")
    assert body["items"] == []


async def test_delete_by_digest_unlists_every_tag(open_hub):
    art = packed("web", "1.0.0")
    await push(open_hub, "team/web", "1.0.0", art)
    await push(open_hub, "team/web", "stable", art)
    assert sorted(await versions(open_hub, "team/web")) == [("1.0.0", "1.0.0"), ("stable", "1.0.0")]
    # Two tags of one manifest are one version.
    status, body = await get_json(open_hub, "/api/v1/appstore/apps/team/web")
    assert status == 200 and [(v["version"], v["tag"], v["tags"]) for v in body["versions"]] == [
        ("1.0.0", "1.0.0", ["1.0.0", "stable"])]
    r = await open_hub.delete(f"/v2/team/web/manifests/{art.digest}")
    assert r.status == 202
    assert await versions(open_hub, "team/web") == []


async def test_a_published_versions_own_tag_does_not_move(open_hub):
    """appstore.immutable_versions (on by default): 1.0.0 of version 1.0.0 is refused other content
    on the OCI path (a plain image, another app version), stays listed, takes the same artifact
    again; `latest` on the same artifact still moves, and the version may still be deleted."""
    art = packed("web", "1.0.0")
    await push(open_hub, "team/web", "1.0.0", art)
    await push(open_hub, "team/web", "latest", art)
    repo = Repo(open_hub, "team/web")
    for attempt in (lambda: repo.push_image("1.0.0"), lambda: push(open_hub, "team/web", "1.0.0",
                                                                     packed("web", "1.0.0", title="Other"))):
        try:
            await attempt()
        except AssertionError as exc:
            assert "DENIED" in str(exc) and "publishes app version 1.0.0" in str(exc), exc
        else:
            raise AssertionError("the version's tag moved")
    await push(open_hub, "team/web", "1.0.0", art)  # the same artifact again
    store = open_hub.server.app[STORE]
    assert (await store.get_app_version("team/web", "1.0.0")).digest == art.digest
    await repo.push_image("latest")  # not a version's own tag
    assert await store.get_app_version("team/web", "latest") is None
    r = await open_hub.delete("/v2/team/web/manifests/1.0.0")
    assert r.status == 202
    assert await versions(open_hub, "team/web") == []


async def test_tag_moved_to_a_plain_image_unlists(request, aiohttp_client, tmp_path):
    """With appstore.immutable_versions off, a version's tag moves like any other, and unlists."""
    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "auth": {"enabled": False},
        "appstore": {"immutable_versions": False}, "database": DATABASE_SETUP["sqlite"](request, tmp_path)})
    hub = await aiohttp_client(create_app(cfg))
    await push(hub, "team/web", "1.0.0", packed("web", "1.0.0"))
    await Repo(hub, "team/web").push_image("1.0.0")
    assert await hub.server.app[STORE].get_app_version("team/web", "1.0.0") is None
    status, _ = await get_json(hub, "/api/v1/appstore/apps/team/web")
    assert status == 404


async def test_tag_moved_to_another_app_version_reindexes(open_hub):
    await push(open_hub, "team/web", "latest", packed("web", "1.0.0"))
    await push(open_hub, "team/web", "latest", packed("web", "1.1.0", title="Web server 2"))
    record = await open_hub.server.app[STORE].get_app_version("team/web", "latest")
    assert (record.version, record.title) == ("1.1.0", "Web server 2")


async def test_versions_sort_by_semver_and_latest_skips_prereleases_and_deprecated(open_hub):
    for version in ("1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "1.10.0-beta.2"):
        await push(open_hub, "team/web", version, packed("web", version, title=f"Web {version}"))
    status, body = await get_json(open_hub, "/api/v1/appstore/apps/team/web")
    assert status == 200
    assert [v["version"] for v in body["versions"]] == ["2.0.0-rc.1", "1.10.0", "1.10.0-beta.2", "1.9.0", "1.2.0"]
    assert body["latest_version"] == "1.10.0" and body["title"] == "Web 1.10.0" and body["version_count"] == 5
    assert [v["prerelease"] for v in body["versions"]] == [True, False, True, False, False]
    await open_hub.server.app[STORE].set_app_version_deprecated("team/web", "1.10.0", True)
    _, body = await get_json(open_hub, "/api/v1/appstore/apps/team/web")
    assert body["latest_version"] == "1.9.0"
    # A re-push keeps the deprecated flag (it belongs to the catalog, not to the artifact).
    await push(open_hub, "team/web", "1.10.0", packed("web", "1.10.0", title="Web 1.10.0"))
    assert (await open_hub.server.app[STORE].get_app_version("team/web", "1.10.0")).deprecated


async def test_plain_compose_publish_artifact_is_indexed_with_defaults(open_hub):
    compose = "name: shop\nservices:\n  api:\n    image: shop/api:${API_TAG:-2}\n"
    await push(open_hub, "team/my_shop", "v2", packed(plain=True, compose=compose, version="v2"))
    status, body = await get_json(open_hub, "/api/v1/appstore/apps/team/my_shop/versions/v2")
    assert status == 200, body
    assert (body["key"], body["title"], body["version"], body["has_metadata"]) == ("my-shop", "shop", "v2", False)
    assert [p["name"] for p in body["parameters"]] == ["API_TAG"]
    # Rendering applies Compose's own default when the parameter is left empty.
    r = await open_hub.post("/api/v1/appstore/apps/team/my_shop/versions/v2/render", json={"values": {}})
    assert r.status == 200, await r.text()
    assert "image: docker.io/shop/api:2" in (await r.json())["compose"] or "shop/api:2" in (await r.json())["compose"]


async def test_plain_artifact_that_is_not_yaml_is_stored_but_not_listed(open_hub):
    await push(open_hub, "team/odd", "1", packed(plain=True, compose="services: [unclosed\n"))
    r = await open_hub.get("/v2/team/odd/manifests/1", headers={"Accept": artifact.OCI_MANIFEST})
    assert r.status == 200
    assert await versions(open_hub, "team/odd") == []


async def test_invalid_daohub_metadata_is_refused_with_manifest_invalid(open_hub):
    bad = packed("web", "1.0.0")
    doc = json.loads(bad.manifest)
    meta = json.dumps({"schemaVersion": 1, "app": {"key": "Not A Key", "title": ""}, "version": {}}).encode()
    blob = artifact.Blob(artifact.METADATA_MEDIA_TYPE, meta)
    doc["layers"][1] = blob.descriptor()
    art = artifact.PackedArtifact(json.dumps(doc).encode(), (*bad.blobs[:2], blob))
    r = await push(open_hub, "team/web", "1.0.0", art, expect=400)
    assert await error_code(r) == "MANIFEST_INVALID"
    detail = (await r.json())["errors"][0]["detail"]
    assert "app.key" in detail and "app.title" in detail
    assert await versions(open_hub, "team/web") == []
    r = await open_hub.get("/v2/team/web/manifests/1.0.0")
    assert r.status == 404


async def test_a_daohub_artifact_whose_template_does_not_render_is_refused(open_hub):
    art = packed("web", "1.0.0", compose="services:\n  web:\n    image: nginx:${UNDECLARED}\n")
    r = await push(open_hub, "team/web", "1.0.0", art, expect=400)
    assert await error_code(r) == "MANIFEST_INVALID" and "UNDECLARED" in (await r.text())


async def test_icon_content_must_match_its_media_type(open_hub):
    good = packed("web", "1.0.0", with_icon=True)
    doc = json.loads(good.manifest)
    fake = artifact.Blob("image/png", b"<script>alert(1)</script>", {"org.opencontainers.image.title": "icon.png"})
    doc["layers"][2] = fake.descriptor()
    art = artifact.PackedArtifact(json.dumps(doc).encode(), (*good.blobs[:3], fake))
    r = await push(open_hub, "team/web", "1.0.0", art, expect=400)
    assert await error_code(r) == "MANIFEST_INVALID"


async def test_missing_layers_are_reported_by_the_registry(open_hub):
    art = packed("web", "1.0.0")
    r = await open_hub.put("/v2/team/web/manifests/1.0.0", data=art.manifest,
                           headers={"Content-Type": artifact.OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_BLOB_UNKNOWN"


async def test_admin_api_tag_and_repository_deletes_unlist(auth_hub):
    admin = await v2_auth(auth_hub, "platform_admin", "team/web")
    await push(auth_hub, "team/web", "1.0.0", packed("web", "1.0.0"), admin)
    await push(auth_hub, "team/web", "1.1.0", packed("web", "1.1.0"), admin)
    admin = headers("platform_admin")
    r = await auth_hub.delete("/api/v1/repositories/team/web/tags/1.1.0", headers=admin)
    assert r.status == 204
    assert await versions(auth_hub, "team/web") == [("1.0.0", "1.0.0")]
    r = await auth_hub.delete("/api/v1/repositories/team/web", headers=admin)
    assert r.status == 204
    assert await versions(auth_hub, "team/web") == []


async def test_listing_pages_and_filters(open_hub):
    for i in range(7):
        categories = ("db",) if i % 2 else ("web", "proxy")
        await push(open_hub, f"team/app{i}", "1.0.0", packed(f"app{i}", "1.0.0", title=f"App number {i}",
                                                             categories=categories))
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body = await get_json(open_hub, "/api/v1/appstore/apps", params=params)
        assert status == 200
        seen += [a["repository"] for a in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"team/app{i}" for i in range(7)]
    status, body = await get_json(open_hub, "/api/v1/appstore/apps", params={"category": "DB"})
    assert [a["key"] for a in body["items"]] == ["app1", "app3", "app5"]
    status, body = await get_json(open_hub, "/api/v1/appstore/apps", params={"q": "number 4"})
    assert [a["key"] for a in body["items"]] == ["app4"]
    status, body = await get_json(open_hub, "/api/v1/appstore/apps", params={"tenant": "other"})
    assert body["items"] == []
    status, body = await get_json(open_hub, "/api/v1/appstore/categories")
    assert body == {"items": [{"name": "db", "apps": 3}, {"name": "proxy", "apps": 4}, {"name": "web", "apps": 4}]}


async def test_icon_is_served_safely(open_hub):
    await push(open_hub, "team/web", "1.0.0", packed("web", "1.0.0", with_icon=True))
    r = await open_hub.get("/api/v1/appstore/apps/team/web/icon")
    assert r.status == 200 and await r.read() == PNG
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert "max-age" in r.headers["Cache-Control"] and r.headers["ETag"]
    again = await open_hub.get("/api/v1/appstore/apps/team/web/versions/1.0.0/icon",
                               headers={"If-None-Match": r.headers["ETag"]})
    assert again.status == 304
    await push(open_hub, "team/plain", "1.0.0", packed("plain", "1.0.0"))
    r = await open_hub.get("/api/v1/appstore/apps/team/plain/icon")
    assert r.status == 404


async def test_replicas_on_one_postgresql_see_a_push_at_once(request, aiohttp_client, tmp_path):
    from hub.app import create_app
    from hub.config import load_config

    url = request.getfixturevalue("postgres_url")
    replicas = []
    for name in ("a", "b"):
        cfg = load_config(environ={}, overrides={
            "data_dir": str(tmp_path / name), "log": {"access_log": False}, "auth": {"enabled": False},
            "storage": {"driver": "filesystem", "root": str(tmp_path / "shared")},
            "database": {"url": url, "pool_min_size": 1}})
        replicas.append(await aiohttp_client(create_app(cfg)))
    a, b = replicas
    await push(a, "team/web", "1.0.0", packed("web", "1.0.0", with_icon=True))
    status, body = await get_json(b, "/api/v1/appstore/apps/team/web")
    assert status == 200 and body["latest_version"] == "1.0.0"
    r = await b.get("/api/v1/appstore/apps/team/web/icon")
    assert r.status == 200 and await r.read() == PNG
    r = await b.delete("/api/v1/appstore/apps/team/web/versions/1.0.0")
    assert r.status == 204
    status, _ = await get_json(a, "/api/v1/appstore/apps/team/web")
    assert status == 404
