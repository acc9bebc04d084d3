"""`/` over HTTP (aiohttp's test client): a landing page for browsers with this server's address
filled in (public_url, else Host; escaped, and a placeholder for anything that is not a host),
the web catalog's security headers and working links; the JSON 404 for every API client. The
browser test (test_browser.py) opens the same page in Chromium."""

from __future__ import annotations

from html import unescape

import pytest
from hub.app import create_app
from hub.config import load_config
from hub.web.landing import PLACEHOLDER
from hub.web.pages import CSP
from tests.admin.conftest import make_config

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # Chromium's


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    return await aiohttp_client(create_app(make_config(tmp_path)))


def open_config(tmp_path, **proxy):
    return load_config(environ={}, overrides={"data_dir": str(tmp_path), "log": {"access_log": False},
                                              "auth": {"enabled": False}, "proxy": proxy})


async def landing(client, **headers) -> str:
    r = await client.get("/", headers={**HTML, **headers})
    text = await r.text()
    assert r.status == 200 and r.content_type == "text/html", text[:500]
    assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Vary"] == "Accept"
    return unescape(text)


async def test_a_browser_gets_the_page_with_this_servers_address(hub):
    page = await landing(hub, Host="hub.example:5000")
    assert "DaoHub" in page and '<span id="host">hub.example:5000</span>' in page
    for snippet in ("docker login hub.example:5000", "docker push hub.example:5000/team/alpine:3.20",
                    "docker pull hub.example:5000/team/alpine:3.20",
                    "podman login --tls-verify=false hub.example:5000",
                    "podman push --tls-verify=false alpine:3.20 hub.example:5000/team/alpine:3.20",
                    '"insecure-registries": ["hub.example:5000"]', '"registry-mirrors": ["http://hub.example:5000"]',
                    '[host."http://hub.example:5000"]', 'location = "hub.example:5000"', "<tenant>/<path>",
                    "the platform admin may push anywhere"):
        assert snippet in page, snippet
    # Every link on the page answers (the app store, the API document, the page itself).
    links = {"/apps/", "/api/v1/openapi.json", "/"}
    assert {f'href="{link}"' for link in links} <= {f'href="{h}"' for h in _hrefs(page)}
    for link in links:
        r = await hub.get(link, headers=HTML)
        assert r.status == 200, link
    assert (await (await hub.get("/api/v1/openapi.json")).json())["openapi"].startswith("3.")


def _hrefs(page: str) -> set[str]:
    import re

    return set(re.findall(r'href="([^"]*)"', page))


async def test_public_url_names_the_address_and_https_needs_no_insecure_settings(aiohttp_client, tmp_path):
    config = make_config(tmp_path)
    config.server.public_url = "https://registry.acme.test"
    client = await aiohttp_client(create_app(config))
    page = await landing(client, Host="10.0.0.7:5000")
    assert "docker push registry.acme.test/team/alpine:3.20" in page and "10.0.0.7" not in page
    assert "insecure" not in page and "--tls-verify" not in page
    assert '"registry-mirrors": ["https://registry.acme.test"]' in page


@pytest.mark.parametrize("host", ['evil"><script>alert(1)</script>', "a b", "x" * 300 + ".example", "h:5000/path",
                                  "user@host", ""])
async def test_a_host_header_that_is_not_a_host_is_never_shown(hub, host):
    r = await hub.get("/", headers={**HTML, "Host": host})
    text = await r.text()
    assert r.status == 200 and "<script>" not in text
    assert f'<span id="host">{PLACEHOLDER}</span>' in text
    if host:
        assert host not in unescape(text)


async def test_loopback_needs_no_docker_insecure_setting(hub):
    page = await landing(hub, Host="127.0.0.1:5000")
    assert "docker push 127.0.0.1:5000/team/alpine:3.20" in page
    assert "first add it to" not in page  # docker treats 127.0.0.0/8 as insecure already


@pytest.mark.parametrize("accept", [None, "application/json", "*/*",
                                    "application/vnd.oci.image.manifest.v1+json"])
async def test_api_clients_keep_the_json_404(hub, accept):
    r = await hub.get("/", headers={"Accept": accept} if accept else {})
    assert r.status == 404 and r.content_type == "application/json"
    assert (await r.json())["errors"][0]["code"] == "UNSUPPORTED"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_keep_the_json_404_even_from_a_browser(hub, method):
    r = await hub.request(method, "/", headers=HTML)
    assert r.status == 404 and r.content_type == "application/json"


async def test_an_open_registry_has_no_login_and_no_admin_api_link(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(open_config(tmp_path)))
    page = await landing(client, Host="hub.example:5000")
    assert "docker login" not in page and "podman login" not in page and "/api/v1/openapi.json" not in page
    assert "docker push hub.example:5000/team/alpine:3.20" in page and "open" in page


async def test_the_mirror_section_names_the_upstreams_anyone_may_pull_through(aiohttp_client, tmp_path):
    config = make_config(tmp_path)
    config.proxy = open_config(tmp_path, default_mirror="docker.io", upstreams=[
        {"name": "docker.io", "url": "https://registry-1.docker.io", "anonymous_pull": True},
        {"name": "ghcr.io", "url": "https://ghcr.io", "anonymous_pull": True},
        {"name": "private.example", "url": "https://internal.example:8443"}]).proxy
    client = await aiohttp_client(create_app(config))
    page = await landing(client, Host="hub.example:5000")
    assert "docker.io (the default mirror)" in page.replace("<code>", "").replace("</code>", "")
    assert "ghcr.io" in page and "private.example" not in page and "internal.example" not in page
    assert "/etc/containerd/certs.d/docker.io/hosts.toml" in page
    assert 'server = "https://registry-1.docker.io"' in page


async def test_client_setup_json_lists_what_anyone_may_pull_through_the_default_first(aiohttp_client, tmp_path):
    """GET /client-setup, what `daohub client setup` builds its files from: anonymous, the same upstreams as
    the page (none of the private one's names or its URL), and for each the hosts clients call it by."""
    config = make_config(tmp_path)
    config.proxy = open_config(tmp_path, default_mirror="docker.io", upstreams=[
        {"name": "ghcr", "url": "https://ghcr.io", "aliases": ["ghcr.io"], "anonymous_pull": True},
        {"name": "docker.io", "url": "https://registry-1.docker.io", "aliases": ["index.docker.io"],
         "anonymous_pull": True},
        {"name": "private.example", "url": "https://internal.example:8443"}]).proxy
    client = await aiohttp_client(create_app(config))
    r = await client.get("/client-setup", headers={"Host": "hub.example:5000"})
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert await r.json() == {"scheme": "http", "host": "hub.example:5000", "mirrors": [
        {"name": "docker.io", "namespaces": ["docker.io"], "default": True},
        {"name": "ghcr", "namespaces": ["ghcr.io"], "default": False}]}
    assert "internal" not in await r.text() and "private" not in await r.text()
    # The page shows the same files: a hosts.toml per namespace, a path-prefix mirror for ghcr.
    page = await landing(client, Host="hub.example:5000")
    assert "/etc/containerd/certs.d/ghcr.io/hosts.toml" in page and 'server = "https://ghcr.io"' in page
    assert 'location = "hub.example:5000/ghcr"' in page
    assert "daohub client setup --server http://hub.example:5000 --write" in page
    r = await client.get("/client-setup", headers={"Host": 'evil"><b>'})
    assert (await r.json())["host"] == PLACEHOLDER


async def test_without_a_default_mirror_the_page_says_docker_cannot_use_it(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(open_config(tmp_path, upstreams=[
        {"name": "ghcr.io", "url": "https://ghcr.io"}])))
    page = await landing(client, Host="hub.example:5000")
    assert "registry-mirrors" in page and '"registry-mirrors"' not in page and "none is set" in page
    assert "/etc/containerd/certs.d/ghcr.io/hosts.toml" in page


async def test_with_nothing_mirrored_the_page_offers_no_client_setup_command(hub):
    page = await landing(hub, Host="hub.example:5000")
    assert "No upstream registry is cached here" in page and "daohub client setup" not in page
    assert '"registry-mirrors": ["http://hub.example:5000"]' in page   # what Docker Hub would need
