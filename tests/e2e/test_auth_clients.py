"""Real clients against a DaoHub with token auth on: login, push, pull, robots, public repos, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.server import REPO_ROOT, DaoHubProcess

from .util import (Layout, docker_login_push_pull_refused, insecure_registry_env, podman_login, podman_login_push_pull,
                   skopeo)

pytestmark = pytest.mark.e2e

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2"}


def hub_cli(server: DaoHubProcess, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "hub", *args, "--data-dir", str(server.data_dir)],
                            cwd=REPO_ROOT, env=server.environment(), input=stdin, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"daohub {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def secured(e2e_root):
    """A second DaoHub, auth on, with tenants team and other, users alice and bob, and a robot."""
    server = DaoHubProcess(e2e_root / "secured", env={"DAOHUB_AUTH_ENABLED": "true",
                                                      "DAOHUB_ADMIN_PASSWORD": "admin-Secret-0"})
    server.start()
    hub_cli(server, "tenant", "create", "team")
    hub_cli(server, "tenant", "create", "other")
    for user, tenant, role in (("alice", "team", "developer"), ("bob", "other", "admin")):
        hub_cli(server, "user", "create", user, "--password-stdin", stdin=PASSWORDS[user] + "\n")
        hub_cli(server, "tenant", "member", tenant, user, role)
    robot = json.loads(hub_cli(server, "robot", "create", "team", "ci", "--repo", "team/ci/*",
                               "--action", "pull", "--action", "push", "--expires-days", "1"))
    server.robot = robot
    yield server
    assert server.stop() == 0, server.log_text()[-3000:]


@pytest.fixture(scope="module")
def secured_env(containers_env, secured, e2e_root):
    """containers_env, plus the secured registry marked insecure (plain HTTP) and its own auth file."""
    return insecure_registry_env(containers_env, secured.host, e2e_root, "secured")


def test_skopeo_creds_push_and_pull(secured, secured_env, image, workdir):
    ref = f"docker://{secured.host}/team/app:1"
    skopeo(secured_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
           f"alice:{PASSWORDS['alice']}", image.storage_ref, ref)
    inspected = json.loads(skopeo(secured_env, "inspect", "--tls-verify=false", "--creds",
                                  f"alice:{PASSWORDS['alice']}", ref).stdout)
    assert inspected["Name"] == f"{secured.host}/team/app"
    # Without credentials a private repository cannot even be inspected.
    refused = skopeo(secured_env, "inspect", "--tls-verify=false", "--no-creds", ref, check=False)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "denied" in refused.stderr.lower(), refused.stderr
    # Pull back and check every blob by digest.
    out = workdir / "pulled"
    skopeo(secured_env, "copy", "--quiet", "--src-tls-verify=false", "--src-creds", f"alice:{PASSWORDS['alice']}",
           ref, f"oci:{out}:1")
    Layout(out).verify()


def test_podman_login_push_pull(secured, secured_env, image):
    podman_login_push_pull(secured_env, secured.host, "alice", PASSWORDS["alice"], image.storage_ref.split(":", 1)[1],
                           f"{secured.host}/team/podman:1")
    failed = podman_login(secured_env, secured.host, "alice", "wrong-password", check=False)
    assert failed.returncode != 0


def test_docker_login_push_pull_and_refused_cross_tenant_push(secured, secured_env, image, dockerd):
    # alice is no member of tenant "other": docker's own error message says so.
    message = docker_login_push_pull_refused(dockerd, secured_env, secured.host, "alice", PASSWORDS["alice"], image,
                                             "team/docker", f"{secured.host}/other/stolen:1")
    print(f"\ndocker's message for the refused push: {message[-300:]}")


def test_robot_account_with_skopeo(secured, secured_env, image):
    creds = f"{secured.robot['account']}:{secured.robot['secret']}"
    skopeo(secured_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
           image.storage_ref, f"docker://{secured.host}/team/ci/app:1")
    refused = skopeo(secured_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
                     image.storage_ref, f"docker://{secured.host}/team/app:robot", check=False)
    assert refused.returncode != 0


def test_anonymous_pull_of_public_repository(secured, secured_env, image, workdir):
    ref = f"{secured.host}/team/public:1"
    skopeo(secured_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
           f"alice:{PASSWORDS['alice']}", image.storage_ref, f"docker://{ref}")
    assert skopeo(secured_env, "inspect", "--tls-verify=false", "--no-creds", f"docker://{ref}",
                  check=False).returncode != 0
    hub_cli(secured, "repo", "visibility", "team/public", "public")
    out = workdir / "anon"
    skopeo(secured_env, "copy", "--quiet", "--src-tls-verify=false", "--src-no-creds", f"docker://{ref}",
           f"oci:{out}:1")
    Layout(out).verify()
    # Public means pull, not push.
    refused = skopeo(secured_env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-no-creds",
                     image.storage_ref, f"docker://{ref.replace(':1', ':anon')}", check=False)
    assert refused.returncode != 0
