"""In-process: local blob files over TLS go through aiohttp's read-and-write loop, never through
asyncio's emulation of loop.sendfile() on a TLS transport (7.5 CPU-seconds per GiB against 1.5:
see hub/handlers/blobs.py); server.public_url names the token realm."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
from aiohttp.test_utils import TestServer

from hub.app import create_app
from hub.config import TlsConfig, load_config
from hub.tls import server_context

MiB = 1 << 20


async def test_local_blobs_over_tls_do_not_use_the_sendfile_emulation(aiohttp_client, tmp_path, pki,
                                                                      monkeypatch):
    config = load_config(environ={}, overrides={"data_dir": str(tmp_path / "data"),
                                                "auth": {"enabled": False}, "log": {"access_log": False}})
    server = TestServer(create_app(config))
    await server.start_server(ssl=server_context(TlsConfig(cert_file=str(pki.cert_file),
                                                           key_file=str(pki.key_file))))
    client_context = pki.server_files().client_context()
    client = await aiohttp_client(server, connector=aiohttp.TCPConnector(ssl=client_context))
    loop_type = type(asyncio.get_running_loop())
    emulated = []
    real_sendfile = loop_type.sendfile

    async def counting_sendfile(self, transport, *args, **kwargs):
        emulated.append(transport)
        return await real_sendfile(self, transport, *args, **kwargs)

    monkeypatch.setattr(loop_type, "sendfile", counting_sendfile)
    data = os.urandom(3 * MiB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = await client.post(f"/v2/team/tls/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/team/tls/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    r = await client.get(f"/v2/team/tls/blobs/{digest}", headers={"Range": "bytes=1000-2000999"})
    assert r.status == 206 and await r.read() == data[1000:2001000]
    assert emulated == []


async def test_public_url_names_the_token_realm(aiohttp_client, tmp_path):
    """Behind a proxy that terminates TLS the request is plain http: server.public_url tells the
    clients where the token endpoint is (auth.realm, when set, still wins over both)."""
    overrides = {"data_dir": str(tmp_path / "data"), "server": {"public_url": "https://hub.example/"}}
    client = await aiohttp_client(create_app(load_config(environ={}, overrides=overrides)))
    r = await client.get("/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://hub.example/auth/token"')
    overrides["auth"] = {"realm": "https://login.example/token"}
    client = await aiohttp_client(create_app(load_config(environ={}, overrides=overrides)))
    r = await client.get("/v2/")
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://login.example/token"')
