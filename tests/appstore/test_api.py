"""The app store's JSON API over SQLite and PostgreSQL: publish, read, render with the image check,
deprecate, delete, the Portainer feeds, and bad input (every refusal a 4xx with field-level
errors, never a 500)."""

from __future__ import annotations

import base64
import json

import pytest

from hub.keys import STORE
from tests.registry.conftest import push_image

from . import hubs
from .hubs import PNG, PUBLISHED_COMPOSE, headers, metadata, publish_body, v2_auth

auth_hub = hubs.auth_hub  # the fixture
APPS = "/api/v1/appstore/apps"


async def publish(client, repository: str, body: dict, role: str = "developer", expect: int = 201) -> dict:
    r = await client.post(f"{APPS}/{repository}/versions", json=body, headers=headers(role))
    text = await r.text()
    assert r.status == expect, text
    return json.loads(text) if text else {}


def pointers(problem: dict) -> dict[str, str]:
    assert problem["status"] == 422 and problem["type"].endswith("validation-error"), problem
    return {e.get("pointer") or e.get("parameter"): e["detail"] for e in problem["errors"]}


async def test_publish_read_render_deprecate_delete(auth_hub):
    body = await publish(auth_hub, "team/web", publish_body("web", "1.0.0", with_icon=True))
    assert (body["repository"], body["tag"], body["version"], body["has_metadata"]) == (
        "team/web", "1.0.0", "1.0.0", True)
    assert body["icon"] == f"{APPS}/team/web/versions/1.0.0/icon"
    assert body["compose_files"] == [{"name": "compose.yaml", "content": PUBLISHED_COMPOSE}]
    # The artifact is an ordinary OCI artifact in the registry, pullable as such.
    tok = await v2_auth(auth_hub, "guest", "team/web", "pull")
    r = await auth_hub.get("/v2/team/web/manifests/1.0.0", headers={**tok, "Accept": "application/vnd.oci.image."
                                                                                   "manifest.v1+json"})
    manifest_bytes = await r.read()
    manifest = json.loads(manifest_bytes)
    assert manifest["artifactType"] == "application/vnd.docker.compose.project"
    assert manifest["layers"][0]["annotations"] == {"com.docker.compose.file": "compose.yaml"}

    # A second version, a pre-release, and a re-publish of the same content (accepted, nothing changes).
    await publish(auth_hub, "team/web", publish_body("web", "1.1.0"))
    await publish(auth_hub, "team/web", publish_body("web", "2.0.0-beta.1+build.7"))
    await publish(auth_hub, "team/web", publish_body("web", "1.1.0"))
    r = await auth_hub.get(f"{APPS}/team/web", headers=headers("guest"))
    app = await r.json()
    assert [(v["version"], v["tag"]) for v in app["versions"]] == [
        ("2.0.0-beta.1+build.7", "2.0.0-beta.1_build.7"), ("1.1.0", "1.1.0"), ("1.0.0", "1.0.0")]
    assert app["latest_version"] == "1.1.0" and app["description"] == "Serves **pages**."

    r = await auth_hub.post(f"{APPS}/team/web/versions/1.1.0/render",
                            json={"values": {"HTTP_PORT": "9000", "NGINX_TAG": "1.26"}}, headers=headers("guest"))
    rendered = await r.json()
    assert r.status == 200, rendered
    assert "9000:80" in rendered["compose"] and "nginx:1.26" in rendered["compose"]
    assert rendered["images"] == [{"image": "docker.io/library/nginx:1.26", "services": ["web"], "in_daohub": False,
                                   "exists": None, "pullable": None}]

    r = await auth_hub.patch(f"{APPS}/team/web/versions/1.1.0", json={"deprecated": True},
                             headers=headers("maintainer"))
    assert r.status == 200 and (await r.json())["deprecated"] is True
    r = await auth_hub.get(f"{APPS}/team/web", headers=headers("guest"))
    assert (await r.json())["latest_version"] == "1.0.0"
    r = await auth_hub.patch(f"{APPS}/team/web/versions/1.1.0", json={"deprecated": False},
                             headers=headers("maintainer"))
    assert (await r.json())["deprecated"] is False

    # Deleting a version deletes its manifest: every tag on it goes too.
    maintainer = await v2_auth(auth_hub, "maintainer", "team/web")
    r = await auth_hub.put("/v2/team/web/manifests/stable", data=manifest_bytes, headers={
        **maintainer, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201
    r = await auth_hub.delete(f"{APPS}/team/web/versions/1.0.0", headers=headers("maintainer"))
    assert r.status == 204
    for tag in ("1.0.0", "stable"):
        r = await auth_hub.get(f"{APPS}/team/web/versions/{tag}", headers=headers("guest"))
        assert r.status == 404
    r = await auth_hub.get("/v2/team/web/manifests/stable", headers=maintainer)
    assert r.status == 404
    r = await auth_hub.get(f"{APPS}/team/web", headers=headers("guest"))
    assert [v["version"] for v in (await r.json())["versions"]] == ["2.0.0-beta.1+build.7", "1.1.0"]


async def test_a_published_version_is_not_replaced(auth_hub):
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0"))
    changed = publish_body("web", "1.0.0", title="Another title")
    problem = await publish(auth_hub, "team/web", changed, expect=409)
    assert "already published" in problem["detail"]


async def test_image_check_for_images_in_this_daohub(auth_hub):
    root = await v2_auth(auth_hub, "platform_admin", "team/base")
    await push_image(auth_hub, "team/base", root["Authorization"].removeprefix("Bearer "), tag="1")
    await push_image(auth_hub, "other/private", (await v2_auth(auth_hub, "platform_admin", "other/private"))[
        "Authorization"].removeprefix("Bearer "), tag="1")
    host = f"{auth_hub.server.host}:{auth_hub.server.port}"
    compose = (f"services:\n  a:\n    image: {host}/team/base:1\n  b:\n    image: {host}/team/base:2\n"
               f"  c:\n    image: {host}/other/private:1\n  d:\n    image: redis\n")
    body = publish_body("mix", "1.0.0")
    body["compose_files"][0]["content"] = compose
    body["metadata"]["version"]["parameters"] = []
    await publish(auth_hub, "team/mix", body)
    r = await auth_hub.post(f"{APPS}/team/mix/versions/1.0.0/render", json={"values": {}},
                            headers={**headers("guest"), "Host": host})
    images = {i["image"]: (i["in_daohub"], i["exists"], i["pullable"]) for i in (await r.json())["images"]}
    assert images == {
        f"{host}/team/base:1": (True, True, True),
        f"{host}/team/base:2": (True, False, True),
        # Not the guest's to pull: whether it exists is not told.
        f"{host}/other/private:1": (True, None, False),
        "docker.io/library/redis:latest": (False, None, None),
    }


async def test_portainer_feeds(auth_hub):
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0", with_icon=True))
    await publish(auth_hub, "team/cache", publish_body("cache", "3.0.0", title="Cache"))
    await auth_hub.server.app[STORE].set_repository_public("team/web", True)
    for version in ("2", "3"):
        r = await auth_hub.get(f"/api/v1/appstore/portainer/v{version}.json", headers=headers("guest"))
        feed = await r.json()
        assert r.status == 200 and feed["version"] == version
        assert [t["title"] for t in feed["templates"]] == ["Cache", "Web server"]
        for template in feed["templates"]:
            assert template["type"] == 3 and template["platform"] == "linux" and template["categories"] == ["web"]
            assert template["repository"]["url"].startswith("http") and template["repository"]["stackfile"]
            assert {e["name"] for e in template["env"]} == {"NGINX_TAG", "HTTP_PORT", "GREETING"}
            assert ("id" in template) == (version == "3")
        web = feed["templates"][1]
        assert web["logo"].endswith(f"{APPS}/team/web/versions/1.0.0/icon")
        r = await auth_hub.get(web["logo"].split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
        assert r.status == 200 and await r.read() == PNG
    for creds, params in (({}, {}), (headers("guest"), {"public": "true"})):
        r = await auth_hub.get("/api/v1/appstore/portainer/v2.json", params=params, headers=creds)
        assert [t["title"] for t in (await r.json())["templates"]] == ["Web server"]
    r = await auth_hub.get("/api/v1/appstore/portainer/v3.json", params={"public": "yes"})
    assert r.status == 422


@pytest.mark.parametrize("mutate, pointer", [
    (lambda b: b["metadata"]["app"].update(key="Bad Key"), "#/metadata/app/key"),
    (lambda b: b["metadata"]["app"].update(title=""), "#/metadata/app/title"),
    (lambda b: b["metadata"]["version"].update(version="one"), "#/metadata/version/version"),
    (lambda b: b["metadata"]["version"]["parameters"].append({"name": "HTTP_PORT", "type": "port"}),
     "#/metadata/version/parameters/3/name"),
    (lambda b: b["metadata"]["version"]["parameters"][1].update(default=70000),
     "#/metadata/version/parameters/1/default"),
    (lambda b: b["metadata"].update(schemaVersion=99), "#/metadata/schemaVersion"),
    (lambda b: b["metadata"]["version"].update(composeFiles=["other.yaml"]), "#/metadata/version/composeFiles/0"),
    (lambda b: b["compose_files"][0].update(name="../../etc/compose.yaml"), "#/compose_files/0/name"),
    (lambda b: b["compose_files"][0].update(content="a: [\n"), "#/compose_files/0/content"),
    (lambda b: b["compose_files"][0].update(content="services:\n  web:\n    image: x:${NOT_DECLARED}\n"),
     "#/compose_files"),
    (lambda b: b["compose_files"][0].update(content="services:\n  web:\n    ports: ['99999:80']\n    image: x\n"),
     "#/compose_files"),
    (lambda b: b.update(icon={"name": "../icon.png", "data": base64.b64encode(PNG).decode()}), "#/icon/name"),
    (lambda b: b.update(icon={"name": "icon.png", "data": "not base64!"}), "#/icon/data"),
    (lambda b: b.update(icon={"name": "icon.png", "data": base64.b64encode(b"<svg onload=alert(1)>").decode()}),
     "#/icon"),
    (lambda b: b.update(icon={"name": "icon.png", "data": base64.b64encode(PNG + b"\0" * 300_000).decode()}),
     "#/icon/data"),
    (lambda b: b.update(icon={"name": "logo.png", "data": base64.b64encode(PNG).decode()}), "#/icon"),
    (lambda b: b["metadata"].update({"extra": 1}), "#/metadata/extra"),
    (lambda b: b.update(compose_files=[]), "#/compose_files"),
])
async def test_publish_refuses_bad_input_field_by_field(auth_hub, mutate, pointer):
    body = publish_body("web", "1.0.0")
    mutate(body)
    problem = await publish(auth_hub, "team/web", body, expect=422)
    assert pointer in pointers(problem), problem
    assert await auth_hub.server.app[STORE].app_versions_of("team/web") == []


async def test_publish_refuses_a_yaml_bomb_and_oversized_bodies(auth_hub):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    body = publish_body("web", "1.0.0")
    body["compose_files"][0]["content"] = bomb
    problem = await publish(auth_hub, "team/web", body, expect=422)
    assert "#/compose_files/0/content" in pointers(problem)
    body = publish_body("web", "1.0.0")
    body["compose_files"][0]["content"] = "#" * 300_000
    problem = await publish(auth_hub, "team/web", body, expect=422)
    assert "#/compose_files/0/content" in pointers(problem)
    r = await auth_hub.post(f"{APPS}/team/web/versions", data=b"{" + b" " * (5 << 20) + b"}",
                            headers={**headers("developer"), "Content-Type": "application/json"})
    assert r.status == 413


@pytest.mark.parametrize("values, pointer", [
    ({"HTTP_PORT": 0}, "#/values/HTTP_PORT"),
    ({"HTTP_PORT": "eighty"}, "#/values/HTTP_PORT"),
    ({"NGINX_TAG": "latest"}, "#/values/NGINX_TAG"),
    ({"GREETING": "<script>alert(1)</script>"}, "#/values/GREETING"),
    ({"GREETING": "a\nb"}, "#/values/GREETING"),
    ({"GREETING": ["a list"]}, "#/values/GREETING"),
    ({"UNKNOWN": "x"}, "#/values/UNKNOWN"),
])
async def test_render_reports_bad_values_per_field(auth_hub, values, pointer):
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0"))
    r = await auth_hub.post(f"{APPS}/team/web/versions/1.0.0/render", json={"values": values},
                            headers=headers("developer"))
    problem = await r.json()
    assert r.status == 422, problem
    assert pointer in pointers(problem)


@pytest.mark.parametrize("body", [None, [], {"values": []}, {"values": {}, "extra": 1}, {"values": "x"}])
async def test_render_refuses_malformed_bodies(auth_hub, body):
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0"))
    r = await auth_hub.post(f"{APPS}/team/web/versions/1.0.0/render", data=json.dumps(body) if body is not None
                            else b"", headers={**headers("developer"), "Content-Type": "application/json"})
    assert r.status in (400, 422), await r.text()


@pytest.mark.parametrize("path", [
    f"{APPS}/team/web/versions/..%2F..%2Fetc", f"{APPS}/team/web/versions/-x", f"{APPS}/Team/Web",
    f"{APPS}/team/web/versions/1.0.0/icon?x=../../etc/passwd", f"{APPS}/team//web", f"{APPS}/a",
])
async def test_odd_paths_are_404(auth_hub, path):
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0"))
    r = await auth_hub.get(path, headers=headers("platform_admin"))
    assert r.status in (404, 400), (path, await r.text())


async def test_listing_parameters_are_checked(auth_hub):
    r = await auth_hub.get(APPS, params={"limit": "0"})
    assert r.status == 422 and "limit" in pointers(await r.json())
    r = await auth_hub.get(APPS, params={"cursor": "%%%"})
    assert r.status == 422
    r = await auth_hub.get(APPS, params={"q": "x" * 500})
    assert r.status == 422 and "q" in pointers(await r.json())


def test_the_openapi_document_describes_the_app_store():
    from hub.handlers.admin.openapi import document

    doc = document()
    paths = {p: set(ops) for p, ops in doc["paths"].items() if "/appstore/" in p}
    assert paths == {
        "/api/v1/appstore/apps": {"get"}, "/api/v1/appstore/categories": {"get"},
        "/api/v1/appstore/portainer/v2.json": {"get"}, "/api/v1/appstore/portainer/v3.json": {"get"},
        "/api/v1/appstore/apps/{name}": {"get"}, "/api/v1/appstore/apps/{name}/icon": {"get"},
        "/api/v1/appstore/apps/{name}/versions": {"post"},
        "/api/v1/appstore/apps/{name}/versions/{version}": {"get", "patch", "delete"},
        "/api/v1/appstore/apps/{name}/versions/{version}/icon": {"get"},
        "/api/v1/appstore/apps/{name}/versions/{version}/render": {"post"},
        "/api/v1/appstore/git/{name}/{version}.git/info/refs": {"get"},
        "/api/v1/appstore/git/{name}/{version}.git/git-upload-pack": {"post"},
    }
    for name in ("AppPublish", "AppRender", "AppVersionUpdate", "AppSummary", "App", "AppVersion", "AppRendered"):
        assert name in doc["components"]["schemas"]
    assert metadata()["schemaVersion"] == 1


@pytest.mark.parametrize("nested", ["[" * 900 + "]" * 900, "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000,
                                    "[" * 100_000])
async def test_deeply_nested_bodies_are_400_on_every_json_route(auth_hub, nested):
    """900 levels parse under Python's recursion limit, and would then meet the validator and the
    app model; deeper ones raise RecursionError inside json.loads. Both are refused before parsing."""
    await publish(auth_hub, "team/web", publish_body("web", "1.0.0"))
    for path, body in ((f"{APPS}/team/web/versions", '{"compose_files": [], "metadata": %s}' % nested),
                       (f"{APPS}/team/web/versions/1.0.0/render", '{"values": %s}' % nested),
                       ("/api/v1/tenants", '{"name": "deep", "display_name": %s}' % nested),
                       ("/api/v1/users", '{"username": "deep", "password": %s}' % nested)):
        r = await auth_hub.post(path, data=body, headers={**headers("platform_admin"),
                                                          "Content-Type": "application/json"})
        problem = await r.json(content_type=None)
        assert r.status == 400, (path, problem)
        assert "nested deeper than 64 levels" in problem["detail"], problem
