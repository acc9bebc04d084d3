"""docker, podman and skopeo signing in with LDAP accounts: a `daohub serve` with auth on and a
provider pointing at the session's slapd (StartTLS, certificate checked against the test CA),
groups mapped to developer in team-a and guest in team-b."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers.server import DaoHubProcess
from tests.helpers.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, people_ldif

from .util import (Layout, docker_login_push_pull_refused, insecure_registry_env, podman_login, podman_login_push_pull,
                   run, skopeo)

pytestmark = pytest.mark.e2e

OU = "e2e"
BASE = f"ou={OU},{SUFFIX}"
PEOPLE = {"erin": "erin-Dir-1", "frank": "frank-Dir-2"}
ADMIN_PW = "admin-Secret-0"


@pytest.fixture(scope="module")
def ldap_hub(slapd, e2e_root, containers_env):
    """The hub, with `.directory` (the slapd) and `.client_env` (podman and skopeo's environment for it)."""
    slapd.add(people_ldif(OU, PEOPLE, {"devs": ["erin", "frank"], "readers": ["erin", "frank"]}))
    providers = [{
        "name": "corp", "type": "ldap", "cache_seconds": 1,
        "ldap": {"url": slapd.url, "start_tls": True, "ca_file": str(slapd.pki.ca_file), "bind_dn": ROOT_DN,
                 "bind_password": ROOT_PASSWORD, "user_search_base": BASE},
        "group_mappings": [{"group": f"cn=devs,{BASE}", "tenant": "team-a", "role": "developer"},
                           {"group": f"cn=readers,{BASE}", "tenant": "team-b", "role": "guest"}]}]
    server = DaoHubProcess(e2e_root / "ldap", env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN_PW,
                                                   "DAOHUB_AUTH_PROVIDERS": json.dumps(providers)})
    server.start()
    for tenant in ("team-a", "team-b"):
        server.cli("tenant", "create", tenant)
    server.directory = slapd
    server.client_env = insecure_registry_env(containers_env, server.host, e2e_root, "ldap")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]


@pytest.fixture(scope="module")
def ldap_env(ldap_hub):
    return ldap_hub.client_env


def creds(user: str) -> str:
    return f"{user}:{PEOPLE[user]}"


def token_access(hub: DaoHubProcess, user: str, password: str, scope: str) -> tuple[int, list]:
    """The token endpoint's status and granted access, as a client's token request sees them."""
    request = urllib.request.Request(f"{hub.url}/auth/token?service=daohub&scope={scope}", headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.load(response)["token"]
    except urllib.error.HTTPError as exc:
        return exc.code, []
    payload = token.split(".")[1]
    return 200, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["access"]


def test_docker_login_push_pull_with_an_ldap_account(ldap_hub, ldap_env, image, dockerd):
    # Developer in team-a (push and pull), guest in team-b: no push there.
    docker_login_push_pull_refused(dockerd, ldap_env, ldap_hub.host, "erin", PEOPLE["erin"], image, "team-a/docker",
                                   f"{ldap_hub.host}/team-b/docker:1")


def test_podman_login_push_pull_with_an_ldap_account(ldap_hub, ldap_env, image):
    podman_login_push_pull(ldap_env, ldap_hub.host, "erin", PEOPLE["erin"], image.storage_ref.split(":", 1)[1],
                           f"{ldap_hub.host}/team-a/podman:1")
    for user, password in (("erin", "wrong-password"), ("*)(uid=*", PEOPLE["erin"])):
        assert podman_login(ldap_env, ldap_hub.host, user, password, check=False).returncode != 0, user


def test_skopeo_with_an_ldap_account_developer_in_a_guest_in_b(ldap_hub, ldap_env, image, workdir):
    ref = f"docker://{ldap_hub.host}/team-a/skopeo:1"
    skopeo(ldap_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds("erin"), image.storage_ref, ref)
    out = workdir / "pulled"
    skopeo(ldap_env, "copy", "--quiet", "--src-tls-verify=false", "--src-creds", creds("erin"), ref, f"oci:{out}:1")
    Layout(out).verify()
    # team-b: the admin puts an image there; erin, a guest, pulls it and may not push.
    b_ref = f"docker://{ldap_hub.host}/team-b/skopeo:1"
    skopeo(ldap_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"admin:{ADMIN_PW}",
           image.storage_ref, b_ref)
    skopeo(ldap_env, "inspect", "--tls-verify=false", "--creds", creds("erin"), b_ref)
    refused = skopeo(ldap_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds("erin"),
                     image.storage_ref, f"docker://{ldap_hub.host}/team-b/skopeo:erin", check=False)
    assert refused.returncode != 0


def test_removal_from_the_group_revokes_push(ldap_hub, ldap_env, image):
    ref = f"docker://{ldap_hub.host}/team-a/frank:1"
    skopeo(ldap_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds("frank"),
           image.storage_ref, ref)
    ldap_hub.directory.ldapmodify(f"dn: cn=devs,{BASE}\nchangetype: modify\ndelete: member\nmember: uid=frank,{BASE}\n")
    # Within the cache (1 s here) the token endpoint stops granting push; tokens already issued
    # keep theirs for at most the token lifetime.
    scope = "repository:team-a/frank:pull,push"
    for _ in range(60):
        status, granted = token_access(ldap_hub, "frank", PEOPLE["frank"], scope)
        assert status == 200
        if not granted:
            break
        time.sleep(0.25)
    assert granted == []
    refused = skopeo(ldap_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds("frank"),
                     image.storage_ref, f"docker://{ldap_hub.host}/team-a/frank:2", check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower(), refused.stderr


def test_slapd_down_local_admin_works_ldap_users_get_503(ldap_hub, ldap_env, image):
    directory = ldap_hub.directory
    directory.stop()
    try:
        time.sleep(1.1)  # past cache_seconds: nothing is answered from the cache any more
        podman_login(ldap_env, ldap_hub.host, "admin", ADMIN_PW)
        run(["podman", "push", "--tls-verify=false", image.storage_ref.split(":", 1)[1],
             f"{ldap_hub.host}/team-a/breakglass:1"], env=ldap_env)
        run(["podman", "logout", ldap_hub.host], env=ldap_env)
        assert token_access(ldap_hub, "erin", PEOPLE["erin"], "repository:team-a/app:pull")[0] == 503
        failed = podman_login(ldap_env, ldap_hub.host, "erin", PEOPLE["erin"], check=False)
        assert failed.returncode != 0
        print(f"\npodman's message while the directory is down: {failed.stderr.strip()[-300:]}")
        assert "503" in failed.stderr or "unavailable" in failed.stderr.lower(), failed.stderr
    finally:
        directory.start()
    assert token_access(ldap_hub, "erin", PEOPLE["erin"], "repository:team-a/app:pull")[0] == 200
