"""Publishing with a plain OCI client: the `oras` Python package pushes an app (compose file,
DaoHub metadata and icon as layers of their media types, the compose project type as its config
media type, as oras-py declares an artifact type) to a live DaoHub over HTTP; the app is in the
catalog as soon as the push returns, and deleting the tag with oras takes it out again. Over
SQLite and PostgreSQL, with token auth as docker and oras clients use it."""

from __future__ import annotations

import asyncio
import json

import oras.client

from appstore import artifact
from hub.keys import STORE

from . import hubs
from .hubs import COMPOSE, PNG, headers, metadata, v2_auth

auth_hub = hubs.auth_hub  # the fixture


def oras_client(host: str, token: str) -> oras.client.OrasClient:
    """An oras client holding a token for the repository, as a CI job gets one. (oras-py keeps the
    first token it is given and never asks for a wider one, so a push that starts with a pull-only
    challenge would fail against any registry that answers insufficient scope with 401, as
    distribution and DaoHub do.)"""
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.auth.set_token_auth(token)
    return client


def oras_push(host: str, target: str, folder, token: str, *, with_metadata: bool = True) -> None:
    (folder / "compose.yaml").write_text(COMPOSE)
    (folder / "meta.json").write_text(json.dumps(metadata("web", "1.2.0", icon="icon.png")))
    (folder / "icon.png").write_bytes(PNG)
    (folder / "annotations.json").write_text(json.dumps({
        str(folder / "compose.yaml"): {"com.docker.compose.file": "compose.yaml"}}))
    files = [f"{folder / 'compose.yaml'}:{artifact.COMPOSE_MEDIA_TYPE}"]
    if with_metadata:
        files += [f"{folder / 'meta.json'}:{artifact.METADATA_MEDIA_TYPE}", f"{folder / 'icon.png'}:image/png"]
    client = oras_client(host, token)
    client.push(target=f"{host}/{target}", files=files, disable_path_validation=True,
                manifest_config=f":{artifact.ARTIFACT_TYPE}",
                annotation_file=str(folder / "annotations.json"),
                manifest_annotations={artifact.TITLE: "Web server"}, quiet=True)


def oras_delete_tag(host: str, repository: str, tag: str, token: str) -> None:
    client = oras_client(host, token)
    client.delete_tag(f"{host}/{repository}:{tag}", tag)


async def as_role(client, role: str, repository: str) -> str:
    return (await v2_auth(client, role, repository))["Authorization"].removeprefix("Bearer ")


async def test_oras_push_lists_the_app_at_once_and_tag_delete_unlists_it(auth_hub, tmp_path):
    host = f"{auth_hub.server.host}:{auth_hub.server.port}"
    await asyncio.to_thread(oras_push, host, "team/web:1.2.0", tmp_path, await as_role(auth_hub, "developer", "team/web"))

    r = await auth_hub.get("/api/v1/appstore/apps/team/web", headers=headers("guest"))
    assert r.status == 200, await r.text()
    app = await r.json()
    assert (app["key"], app["title"], app["latest_version"]) == ("web", "Web server", "1.2.0")
    r = await auth_hub.get("/api/v1/appstore/apps/team/web/versions/1.2.0", headers=headers("guest"))
    version = await r.json()
    assert version["has_metadata"] and [p["name"] for p in version["parameters"]] == [
        "NGINX_TAG", "HTTP_PORT", "GREETING"]
    assert version["compose_files"] == [{"name": "compose.yaml", "content": COMPOSE}]
    r = await auth_hub.get("/api/v1/appstore/apps/team/web/icon", headers=headers("guest"))
    assert r.status == 200 and await r.read() == PNG and r.content_type == "image/png"
    r = await auth_hub.post("/api/v1/appstore/apps/team/web/versions/1.2.0/render",
                            json={"values": {"HTTP_PORT": 9090}}, headers=headers("guest"))
    assert r.status == 200 and "9090:80" in (await r.json())["compose"]
    # The manifest is what oras pushed: the type in the config, layers of their media types.
    record = await auth_hub.server.app[STORE].get_manifest("team/web", "1.2.0", by_digest=False)
    doc = json.loads(record.content)
    assert record.artifact_type == artifact.ARTIFACT_TYPE and doc["config"]["mediaType"] == artifact.ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in doc["layers"]] == [
        artifact.COMPOSE_MEDIA_TYPE, artifact.METADATA_MEDIA_TYPE, "image/png"]

    await asyncio.to_thread(oras_delete_tag, host, "team/web", "1.2.0", await as_role(auth_hub, "maintainer", "team/web"))
    r = await auth_hub.get("/api/v1/appstore/apps/team/web", headers=headers("guest"))
    assert r.status == 404
    r = await auth_hub.get("/api/v1/appstore/apps", headers=headers("guest"))
    assert (await r.json())["items"] == []


async def test_oras_push_of_a_plain_compose_project(auth_hub, tmp_path):
    host = f"{auth_hub.server.host}:{auth_hub.server.port}"
    token = await as_role(auth_hub, "developer", "team/plain")
    await asyncio.to_thread(oras_push, host, "team/plain:v1", tmp_path, token, with_metadata=False)
    r = await auth_hub.get("/api/v1/appstore/apps/team/plain/versions/v1", headers=headers("developer"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert (body["title"], body["has_metadata"]) == ("Web server", False)
    assert {p["name"] for p in body["parameters"]} == {"NGINX_TAG", "HTTP_PORT", "GREETING"}
