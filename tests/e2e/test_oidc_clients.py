"""Sign-in with OpenID Connect end to end: `daohub serve` with a provider pointing at the session's
real test provider (pyop on loopback, HTTPS with the tests' CA, checked), headless Chromium signing
in through its login form and consent page, and the personal CLI secret made in the console
working for skopeo, podman and docker. Groups map to developer in team-a and guest in team-b.

(The refusals of tampered states, replayed codes and bad ID tokens are in tests/auth/test_oidc.py
and tests/auth/test_oidc_sign_in.py; this module is the real browser and the real clients.)"""

from __future__ import annotations

import base64
import json
import re
import urllib.request

import pytest

from tests.helpers.oidc_provider import OidcUser
from tests.helpers.server import DaoHubProcess
from tests.web.conftest import browser  # noqa: F401 (the fixture: Debian's chromium through Playwright)
from tests.web.test_console import axe

from .test_ldap_clients import token_access
from .util import Layout, docker_login_push_pull_refused, insecure_registry_env, podman_login, run, skopeo

pytestmark = pytest.mark.e2e

CLIENT, SECRET = "daohub-e2e", "e2e-client-secret"
ADMIN_PW = "admin-Secret-0"
USER, PASSWORD = "olive", "olive-Idp-1"


@pytest.fixture(scope="module")
def oidc_hub(oidc_op, e2e_root, containers_env):
    oidc_op.add_user(USER, OidcUser(PASSWORD, "Olive Example", "olive@example.test", ["eng", "everyone"]))
    providers = [{
        "name": "corp-sso", "type": "oidc",
        "oidc": {"issuer": oidc_op.issuer, "client_id": CLIENT, "client_secret": SECRET,
                 "ca_file": str(oidc_op.ca_file), "display_name": "Corp SSO"},
        "group_mappings": [{"group": "eng", "tenant": "team-a", "role": "developer"},
                           {"group": "everyone", "tenant": "team-b", "role": "guest"}]}]
    server = DaoHubProcess(e2e_root / "oidc", env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN_PW,
                                                   "DAOHUB_AUTH_PROVIDERS": json.dumps(providers)})
    oidc_op.add_client(CLIENT, SECRET, [f"{server.url}/apps/login/corp-sso/callback"])
    server.start()
    for tenant in ("team-a", "team-b"):
        server.cli("tenant", "create", tenant)
    server.client_env = insecure_registry_env(containers_env, server.host, e2e_root, "oidc")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]


@pytest.fixture(scope="module")
def signed_in(browser, oidc_hub):  # noqa: F811 (the imported fixture)
    """Chromium: the console sends it to sign in; "Sign in with Corp SSO"; the provider's login form
    and consent page; back in the console, signed in. Then a CLI secret is made on the account page.
    Returns (the console home's text, the account page's text, the secret, axe-core's findings on the
    login and account pages)."""
    # ignore_https_errors: the provider's certificate is of the tests' private CA; bypass_csp lets axe in.
    context = browser.new_context(base_url=oidc_hub.url, ignore_https_errors=True, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto("/console/")
        assert "/apps/login" in page.url
        findings = axe(page)
        page.get_by_role("link", name="Sign in with Corp SSO").click()
        page.wait_for_url(re.compile(r"^https://127\.0\.0\.1:\d+/authorize\?"))
        page.fill("#u", USER)
        page.fill("#p", PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{oidc_hub.url}/console/")
        assert page.get_by_text(f"Signed in as {USER}").is_visible()
        home = page.inner_text("main")
        page.goto("/console/account")
        account = page.inner_text("main")
        page.fill("#secret-name", "e2e laptop")
        page.get_by_role("button", name="Create CLI secret").click()
        secret = page.inner_text("#new-secret").strip()
        findings += axe(page)
        return home, account, secret, findings
    finally:
        context.close()


def test_chromium_signs_in_through_the_provider_with_roles_from_its_groups(signed_in):
    home, account, secret, findings = signed_in
    assert findings == []
    assert re.search(r"team-a\s+developer", home) and re.search(r"team-b\s+guest", home), home
    assert USER in account and "Corp SSO" in account, account
    assert re.search(r"team-a\s+developer", account) and re.search(r"team-b\s+guest", account), account
    assert secret.startswith("dhcli_")


def test_skopeo_with_the_cli_secret(oidc_hub, signed_in, image, workdir):
    env, creds = oidc_hub.client_env, f"{USER}:{signed_in[2]}"
    ref = f"docker://{oidc_hub.host}/team-a/skopeo:1"
    skopeo(env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds, image.storage_ref, ref)
    out = workdir / "pulled"
    skopeo(env, "copy", "--quiet", "--src-tls-verify=false", "--src-creds", creds, ref, f"oci:{out}:1")
    Layout(out).verify()
    refused = skopeo(env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds, image.storage_ref,
                     f"docker://{oidc_hub.host}/team-b/skopeo:1", check=False)
    assert refused.returncode != 0  # a guest in team-b


def test_podman_login_and_push_with_the_cli_secret(oidc_hub, signed_in, image):
    env = oidc_hub.client_env
    podman_login(env, oidc_hub.host, USER, signed_in[2])
    run(["podman", "push", "--tls-verify=false", image.storage_ref.split(":", 1)[1],
         f"{oidc_hub.host}/team-a/podman:1"], env=env)
    run(["podman", "logout", oidc_hub.host], env=env)
    assert podman_login(env, oidc_hub.host, USER, signed_in[2][:-1] + "x", check=False).returncode != 0


def test_docker_login_push_pull_with_the_cli_secret(oidc_hub, signed_in, image, dockerd):
    docker_login_push_pull_refused(dockerd, oidc_hub.client_env, oidc_hub.host, USER, signed_in[2], image,
                                   "team-a/docker", f"{oidc_hub.host}/team-b/docker:1")


def test_a_revoked_secret_stops_at_the_next_token(oidc_hub, signed_in):
    secret = signed_in[2]
    scope = "repository:team-a/skopeo:pull,push"
    assert token_access(oidc_hub, USER, secret, scope)[0] == 200
    secret_id = secret.split("_")[1]
    request = urllib.request.Request(f"{oidc_hub.url}/api/v1/users/{USER}/cli-secrets/{secret_id}", method="DELETE",
                                     headers={"Authorization": "Basic " + base64.b64encode(
                                         f"{USER}:{secret}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
    assert token_access(oidc_hub, USER, secret, scope)[0] == 401
    assert podman_login(oidc_hub.client_env, oidc_hub.host, USER, secret, check=False).returncode != 0
