"""Publishing an app counts against the tenant's quota like any push: blobs and the manifest, exactly."""

from __future__ import annotations

import json

from hub.keys import STORE

from . import hubs
from .hubs import headers, publish_body, v2_auth

auth_hub = hubs.auth_hub  # the fixture
APPS = "/api/v1/appstore/apps"


async def referenced_bytes(client, repository: str, tag: str) -> int:
    """Bytes a published version references: its manifest, its config and its layers."""
    tok = await v2_auth(client, "guest", repository, "pull")
    r = await client.get(f"/v2/{repository}/manifests/{tag}",
                         headers={**tok, "Accept": "application/vnd.oci.image.manifest.v1+json"})
    body = await r.read()
    manifest = json.loads(body)
    return len(body) + manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


async def test_publish_counts_exactly_and_past_the_quota_is_refused(auth_hub):
    store = auth_hub.server.app[STORE]
    r = await auth_hub.post(f"{APPS}/team/web/versions", json=publish_body("web", "1.0.0"), headers=headers("developer"))
    assert r.status == 201, await r.text()
    used = await store.tenant_usage("team")
    assert used == await referenced_bytes(auth_hub, "team/web", "1.0.0")
    # Not one byte more fits: the next version is refused with the numbers, and nothing of it is kept.
    await store.update_tenant("team", {"quota_bytes": used})
    r = await auth_hub.post(f"{APPS}/team/web/versions", json=publish_body("web", "1.1.0"), headers=headers("developer"))
    problem = await r.json()
    assert r.status == 403 and problem["type"].endswith("forbidden"), problem
    assert f"uses {used} of {used} bytes" in problem["detail"]
    assert await store.tenant_usage("team") == used
    r = await auth_hub.get(f"{APPS}/team/web", headers=headers("guest"))
    assert [v["version"] for v in (await r.json())["versions"]] == ["1.0.0"]
    await store.update_tenant("team", {"quota_bytes": None})
    r = await auth_hub.post(f"{APPS}/team/web/versions", json=publish_body("web", "1.1.0"), headers=headers("developer"))
    assert r.status == 201
    # The two versions share their compose layer: it counts once.
    manifests = [await referenced_bytes(auth_hub, "team/web", v) for v in ("1.0.0", "1.1.0")]
    assert used < await store.tenant_usage("team") < sum(manifests)
