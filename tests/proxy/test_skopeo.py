"""A real client through the path-prefix form: skopeo copies an image out of an upstream via DaoHub."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.e2e.util import Layout, need_tool

from .conftest import HUB, hub_upstream
from .util import content_requests

pytestmark = pytest.mark.e2e


async def skopeo(tmp_path, *args: str) -> str:
    """skopeo as a subprocess, so this event loop keeps serving the in-process DaoHub meanwhile."""
    env = dict(os.environ)
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    conf = tmp_path / "registries.conf"
    conf.write_text("unqualified-search-registries = []\n")
    env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    proc = await asyncio.create_subprocess_exec(
        need_tool("skopeo"), "--policy", str(policy), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed:\n{err.decode()[-3000:]}"
    return out.decode()


async def test_skopeo_pulls_through_the_path_prefix(proxy_hub, token_hub, hub_up, hub_log, tmp_path):
    image = hub_up.push_image("up/skopeo", "1.0", (300_000, 200_000))
    client = await proxy_hub([hub_upstream(token_hub)])
    ref = f"docker://{client.server.host}:{client.server.port}/{HUB}/up/skopeo:1.0"
    mark = hub_log.mark()
    inspected = json.loads(await skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", ref))
    assert inspected == json.loads(image.manifest)
    await skopeo(tmp_path, "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'out'}:1.0")
    layout = Layout(tmp_path / "out")  # checks every blob against its digest
    layout.verify()
    assert layout.top()["digest"] == image.digest
    assert {d: layout.read(d) for d in image.blobs} == image.blobs
    # Fetched from the Bearer-protected upstream once each, whatever skopeo asked twice.
    counts = content_requests(await hub_log.asince(mark), "GET")
    assert counts == {("GET", "/v2/up/skopeo/manifests/1.0"): 1,
                      **{("GET", f"/v2/up/skopeo/blobs/{d}"): 1 for d in image.blobs}}, counts
