"""Shared by the app store's catalog, API, isolation, oras and CLI tests: hubs over every
metadata store (tests/registry/conftest.py's METADATA_STORES), an app publisher speaking the raw
OCI protocol, and sample apps."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from appstore import artifact
from hub.app import create_app
from hub.config import load_config
from tests.admin.conftest import CREDENTIALS, headers, make_config, seed
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES, basic, bearer, token

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
COMPOSE = """services:
  web:
    image: nginx:${NGINX_TAG}
    ports:
      - "${HTTP_PORT}:80"
    environment:
      GREETING: ${GREETING:-hello}
"""
# COMPOSE as DaoHub publishes it: the parameters' defaults written in, for `docker compose -f oci://`.
PUBLISHED_COMPOSE = """services:
  web:
    image: nginx:${NGINX_TAG-1.27}
    ports:
      - "${HTTP_PORT-8080}:80"
    environment:
      GREETING: ${GREETING:-hello}
"""


def metadata(key: str = "web", version: str = "1.0.0", *, title: str = "Web server", icon: str | None = None,
             categories: tuple[str, ...] = ("web",), description: str = "Serves **pages**.") -> dict:
    app = {"key": key, "title": title, "description": description, "categories": list(categories)}
    if icon:
        app["icon"] = icon
    return {"schemaVersion": 1, "app": app, "version": {
        "version": version, "releaseNotes": f"Release {version}", "composeFiles": ["compose.yaml"],
        "parameters": [
            {"name": "NGINX_TAG", "type": "enum", "options": ["1.27", "1.26"], "default": "1.27"},
            {"name": "HTTP_PORT", "type": "port", "default": 8080, "label": "HTTP port"},
            {"name": "GREETING", "type": "string", "pattern": "[a-z ]*"},
        ]}}


def packed(key: str = "web", version: str = "1.0.0", *, with_icon: bool = False, compose: str = COMPOSE,
           plain: bool = False, **fields) -> artifact.PackedArtifact:
    meta = None if plain else metadata(key, version, icon="icon.png" if with_icon else None, **fields)
    icon = artifact.Icon("icon.png", PNG, "image/png") if with_icon else None
    return artifact.pack([("compose.yaml", compose)], meta, icon, title=fields.get("title", ""), version=version)


def publish_body(key: str = "web", version: str = "1.0.0", *, with_icon: bool = False, **fields) -> dict:
    body = {"compose_files": [{"name": "compose.yaml", "content": COMPOSE}],
            "metadata": metadata(key, version, icon="icon.png" if with_icon else None, **fields)}
    if with_icon:
        body["icon"] = {"name": "icon.png", "data": base64.b64encode(PNG).decode()}
    return copy.deepcopy(body)


async def push(client, repository: str, tag: str, art: artifact.PackedArtifact, auth: dict | None = None,
               expect: int = 201):
    """Push an artifact with the raw OCI protocol; returns the manifest PUT response."""
    for blob in art.blobs:
        r = await client.post(f"/v2/{repository}/blobs/uploads/?digest={blob.digest}", data=blob.data,
                              headers=auth or {})
        assert r.status == 201, await r.text()
    r = await client.put(f"/v2/{repository}/manifests/{tag}", data=art.manifest,
                         headers={**(auth or {}), "Content-Type": artifact.OCI_MANIFEST})
    assert r.status == expect, await r.text()
    return r


async def v2_auth(client, role: str, repository: str, actions: str = "pull,push,delete") -> dict:
    """A Bearer header for /v2/ as `role` (tests/admin's credentials)."""
    user, password = CREDENTIALS[role]
    return bearer(await token(client, f"repository:{repository}:{actions}", user=user, password=password))


async def get_json(client, path: str, role: str = "anonymous", **kwargs):
    r = await client.get(path, headers=headers(role), **kwargs)
    text = await r.text()
    return r.status, (json.loads(text) if text and r.content_type.endswith("json") else text)


@pytest.fixture(params=METADATA_STORES)
async def open_hub(request, aiohttp_client, tmp_path):
    """Auth off: an open registry (every caller may do everything)."""
    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "auth": {"enabled": False},
        "database": DATABASE_SETUP[request.param](request, tmp_path)})
    return await aiohttp_client(create_app(cfg))


@pytest.fixture(params=METADATA_STORES)
async def auth_hub(request, aiohttp_client, tmp_path):
    """Auth on, with tests/admin's tenants (team, other), users of every role and a robot; no images."""
    client = await aiohttp_client(create_app(make_config(tmp_path, DATABASE_SETUP[request.param](request, tmp_path))))
    await seed(client, images=False)
    return client


__all__ = ["COMPOSE", "CREDENTIALS", "PNG", "basic", "get_json", "headers", "metadata", "packed", "publish_body", "push", "v2_auth"]
