"""Promotion from dev/app to prod/app over a real `daohub serve` with auth on (issue 17, must-show 6).

skopeo pushes dev/app:1.2 without the revision annotation: its promotion to prod/app is refused (422,
the gate named). skopeo pushes dev/app:1.2 again with the annotation: the promotion waits for an
approval (202). Its requester may not approve it; a maintainer of prod does. Then prod/app:1.2
pulls with podman and with docker (a private dockerd, tests/helpers/dockerd.py) under the digest
skopeo pushed, and the file sink of the audit export holds the whole trail: the gates set, the
refused request, the request, the approval and the completion, each with who, from, to, the digest
and the gates.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import requests

from tests.helpers.containers import isolated_containers_env
from tests.helpers.images import find_busybox, runnable_image
from tests.helpers.server import DaoHubProcess

from .util import describe, run, skopeo_push_built

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "admin-pw-1234"
USERS = {"dana": "dana-pw-12345", "mona": "mona-pw-12345"}  # dana develops in dev and prod, mona maintains prod
REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"


def _api(server: DaoHubProcess, method: str, path: str, user: str = "admin", **kw) -> requests.Response:
    password = ADMIN_PASSWORD if user == "admin" else USERS[user]
    return requests.request(method, server.url + "/api/v1" + path, auth=(user, password), timeout=60, **kw)


def _oci(image, annotations: dict[str, str] | None):
    """The built image as an OCI manifest (which podman and docker both pull), with `annotations`."""
    doc = json.loads(image.manifest)
    doc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    doc["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    for layer in doc["layers"]:
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    if annotations:
        doc["annotations"] = annotations
    return dataclasses.replace(image, manifest=json.dumps(doc, indent=2).encode())


def _trail(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path):
    trail = tmp_path / "audit.jsonl"
    server = DaoHubProcess(tmp_path / "data", env={
        "DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
        "DAOHUB_GC_ENABLED": "false", "DAOHUB_RETENTION_INTERVAL_SECONDS": "0",
        "DAOHUB_AUDIT_EXPORT_SINKS": json.dumps([{"name": "trail", "type": "file", "path": str(trail)}]),
        "DAOHUB_AUDIT_EXPORT_POLL_INTERVAL_SECONDS": "0.1"})
    server.start()
    try:
        for tenant in ("dev", "prod"):
            assert _api(server, "POST", "/tenants", json={"name": tenant}).status_code == 201
        for user, password in USERS.items():
            assert _api(server, "POST", "/users", json={"username": user, "password": password}).status_code == 201
        for tenant, user, role in (("dev", "dana", "developer"), ("prod", "dana", "developer"),
                                   ("prod", "mona", "maintainer")):
            r = _api(server, "PUT", f"/tenants/{tenant}/members/{user}", json={"role": role})
            assert r.status_code == 200, describe(r)
        yield server, trail
    finally:
        code = server.stop()
    assert code == 0, server.log_text()[-4000:]


def test_dev_to_prod_refused_then_approved_then_pulled_by_podman_and_docker(served, tmp_path, dockerd):
    server, trail = served
    busybox = find_busybox()
    assert busybox, "busybox is needed to build the test images"
    env = isolated_containers_env(tmp_path / "c", "unqualified-search-registries = []\n[[registry]]\n"
                                                  f'location = "{server.host}"\ninsecure = true\n')
    creds = f"dana:{USERS['dana']}"
    r = _api(server, "PUT", "/tenants/prod/promotion-gates", json={"gates": [
        {"repositories": "prod/**", "annotations": [REVISION, SOURCE], "approval": {"role": "maintainer"}}]})
    assert r.status_code == 200, describe(r)

    bare = _oci(runnable_image(busybox, payload_size=4096), None)
    skopeo_push_built(bare, f"{server.host}/dev/app:1.2", tmp_path, env, creds=creds)
    r = _api(server, "POST", "/promotions", "dana", json={"source": "dev/app:1.2", "target": "prod/app:1.2"})
    assert r.status_code == 422, describe(r)
    problem = r.json()
    assert problem["type"] == "urn:daohub:problem:promotion-gates-failed"
    assert [e["requirement"] for e in problem["errors"]] == [f"annotation {REVISION}", f"annotation {SOURCE}"]

    image = _oci(runnable_image(busybox, payload_size=4096),
                 {REVISION: "0123456789abcdef0123456789abcdef01234567", SOURCE: "https://git.example/dev/app"})
    skopeo_push_built(image, f"{server.host}/dev/app:1.2", tmp_path, env, creds=creds)
    r = _api(server, "POST", "/promotions", "dana", json={"source": "dev/app:1.2", "target": "prod/app:1.2"})
    assert r.status_code == 202, describe(r)
    pending = r.json()
    assert (pending["state"], pending["digest"], pending["approval_role"]) == ("pending", image.digest, "maintainer")
    waiting = run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                   f"docker://{server.host}/prod/app:1.2"], env=env, check=False)
    assert waiting.returncode != 0, waiting.stdout  # nothing in prod until it is approved
    assert _api(server, "POST", f"/promotions/{pending['id']}/approve", "dana", json={}).status_code == 403
    r = _api(server, "POST", f"/promotions/{pending['id']}/approve", "mona", json={"reason": "staging passed"})
    assert r.status_code == 200 and r.json()["state"] == "completed", describe(r)

    # podman pulls it under the digest skopeo pushed.
    ref = f"{server.host}/prod/app:1.2"
    run(["podman", "pull", "--tls-verify=false", "--creds", f"mona:{USERS['mona']}", ref], env=env)
    digest = run(["podman", "image", "inspect", "--format", "{{.Digest}}", ref], env=env).stdout.strip()
    assert digest == image.digest
    # So does docker.
    login = run([dockerd.docker, "-H", f"unix://{dockerd.sock}", "login", "-u", "mona", "--password-stdin",
                 server.host], env=dockerd.env, input=USERS["mona"].encode())
    assert "Login Succeeded" in login.stdout
    try:
        dockerd("pull", ref)
        repo_digests = dockerd("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
        assert f"{server.host}/prod/app@{image.digest}" in repo_digests, repo_digests
        out = dockerd("run", "--rm", "--network", "none", ref, "echo", "promoted").stdout
        assert out.strip() == "promoted"
    finally:
        dockerd("rmi", "--force", ref, check=False)
        dockerd("logout", server.host, check=False)

    # The trace names the revision, both repositories and the promotion.
    found = _api(server, "GET", f"/artifacts/{image.digest}", "mona").json()
    assert found["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert found["source_url"] == "https://git.example/dev/app"
    assert [p["id"] for p in found["promotions"]] == [pending["id"]]
    assert {(h["repository"], tuple(h["tags"])) for h in found["repositories"]} >= {("prod/app", ("1.2",))}

    # The audit export's file holds the whole trail.
    def promotion_rows() -> list[dict]:
        return [row for row in _trail(trail) if row["action"].startswith("promotion")]

    _wait_for(lambda: any(r["action"] == "promotion.complete" for r in promotion_rows()), "the completion's row")
    rows = promotion_rows()
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("admin", "promotion_gates.set"), ("dana", "promotion.refuse"), ("dana", "promotion.request"),
        ("mona", "promotion.approve"), ("mona", "promotion.complete")]
    refused, requested, approved, completed = (r["detail"] for r in rows[1:])
    assert refused["digest"] == bare.digest and not any(g["passed"] for g in refused["gates"][:2])
    for detail in (requested, approved, completed):
        assert (detail["source"], detail["target"], detail["digest"], detail["requested_by"]) == (
            f"dev/app@{image.digest}", "prod/app:1.2", image.digest, "dana")
        assert [(g["requirement"], g["passed"]) for g in detail["gates"]] == [
            (f"annotation {REVISION}", True), (f"annotation {SOURCE}", True), ("approval by maintainer", True)]
    assert (approved["decided_by"], approved["reason"]) == ("mona", "staging passed")
    assert completed["state"] == "completed" and completed["copied"]["blobs"] == 3
    assert {r["tenant"] for r in rows} == {"prod"}
