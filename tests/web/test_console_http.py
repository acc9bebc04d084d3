"""The console over HTTP (aiohttp's test client), for what the browser walk does not reach: an
open registry (auth off) has no console, and says so on an HTML 404 page."""

from __future__ import annotations

from hub.app import create_app
from hub.web.pages import CSP

from .test_landing import HTML, open_config


async def test_an_open_registry_says_the_console_needs_accounts(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(open_config(tmp_path)))
    for path in ("/console/", "/console/platform", "/console/nothing", "/console/r/team/none", "/console/t/none/",
                 "/console/t/team/promotions", "/console/t/team/gc", "/console/t/team/retention",
                 "/console/t/team/members", "/console/platform/gc"):
        r = await client.get(path, headers=HTML)
        text = await r.text()
        assert r.status == 404 and r.content_type == "text/html", path
        assert r.headers["Content-Security-Policy"] == CSP
        assert "auth.enabled" in text or "no such page" in text, path
