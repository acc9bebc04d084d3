"""Immutable tags against real clients (issue 16, must-show 3): with the tenant's rule "every
release >= 1.0.0 in imm/** is immutable", skopeo, podman and docker each get a clear refusal
naming the rule for a moving push and for a push of other content, skopeo's delete is refused, and
a retention run protects the tags; an identical re-push succeeds with each client, and a tag the
rule does not match still moves.

On the session registry (tenant `imm`, its own): two different images, `image` (amd64) and the
arm64 one of `arch_images`, give two different manifests."""

from __future__ import annotations

import json
import re

import pytest

from .util import Api, describe, run

pytestmark = pytest.mark.e2e

RULES = {"rules": [{"repositories": "imm/**", "tags": {"semver": ">=1.0.0"}}]}
REFUSAL = re.compile(r"tag (\S+) of imm/app is immutable \(rule 1: repositories imm/\*\*, tags semver >=1\.0\.0\)")


@pytest.fixture(scope="module")
def immutable_tenant(registry, is_daohub):
    if not is_daohub:
        pytest.skip("immutable tags are DaoHub's (distribution has none)")
    registry.cli("tenant", "create", "imm")
    registry.cli("retention", "immutable", "set", "--tenant", "imm", "--file", "-", stdin=json.dumps(RULES))
    return "imm"


def _digest(api: Api, tag: str) -> str:
    r = api.manifest("imm/app", tag)
    assert r.status_code == 200, describe(r)
    return r.headers["Docker-Content-Digest"]


def _refused(result, tag: str) -> str:
    """The client failed, and printed the registry's message naming the tag and the rule."""
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    found = REFUSAL.search(out)
    assert found and found.group(1) == tag, out[-3000:]
    return out


def _skopeo(env, *args: str, check: bool = True):
    return run(["skopeo", *args], env=env, check=check)


def test_skopeo_and_podman_are_refused_a_move_other_content_and_a_delete(registry, immutable_tenant, containers_env,
                                                                         image, arch_images):
    api = Api(registry.url)
    reg = registry.host
    other = arch_images["arm64"]
    _skopeo(containers_env, "copy", "--quiet", "--dest-tls-verify=false", image.storage_ref,
            f"docker://{reg}/imm/app:1.0.0")
    _skopeo(containers_env, "copy", "--quiet", "--dest-tls-verify=false", other.storage_ref,
            f"docker://{reg}/imm/app:dev")
    release, dev = _digest(api, "1.0.0"), _digest(api, "dev")
    assert release != dev

    # skopeo: moving the tag onto an image the repository holds; other content; a delete.
    moved = _skopeo(containers_env, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{reg}/imm/app:dev", f"docker://{reg}/imm/app:1.0.0", check=False)
    assert "denied" in _refused(moved, "1.0.0").lower()
    converted = _skopeo(containers_env, "copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2",
                        image.storage_ref, f"docker://{reg}/imm/app:1.0.0", check=False)
    _refused(converted, "1.0.0")
    deleted = _skopeo(containers_env, "delete", "--tls-verify=false", f"docker://{reg}/imm/app:1.0.0", check=False)
    _refused(deleted, "1.0.0")
    # The identical re-push succeeds and changes nothing.
    _skopeo(containers_env, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{reg}/imm/app:1.0.0", f"docker://{reg}/imm/app:1.0.0")
    assert _digest(api, "1.0.0") == release

    # podman: a new release tag is created, pushed again identically, then refused other content.
    podman = ["podman", "push", "--tls-verify=false"]
    run([*podman, image.name, f"{reg}/imm/app:2.0.0"], env=containers_env)
    first = _digest(api, "2.0.0")
    run([*podman, image.name, f"{reg}/imm/app:2.0.0"], env=containers_env)
    assert _digest(api, "2.0.0") == first
    pushed = run([*podman, other.name, f"{reg}/imm/app:2.0.0"], env=containers_env, check=False)
    _refused(pushed, "2.0.0")
    converted = run([*podman, "--format", "v2s2", image.name, f"{reg}/imm/app:2.0.0"], env=containers_env,
                    check=False)
    _refused(converted, "2.0.0")
    assert _digest(api, "2.0.0") == first

    # A tag the rule does not match moves as before.
    run([*podman, image.name, f"{reg}/imm/app:dev"], env=containers_env)
    assert _digest(api, "dev") != dev
    # The OCI DELETE by digest and by tag over plain HTTP: DENIED, with the rule in the message.
    for ref in ("1.0.0", release):
        r = api.request("DELETE", f"/v2/imm/app/manifests/{ref}")
        assert r.status_code == 403, describe(r)
        error = r.json()["errors"][0]
        assert error["code"] == "DENIED" and REFUSAL.search(error["message"]), error
    assert _digest(api, "1.0.0") == release


def test_docker_is_refused_a_moving_push_and_takes_an_identical_one(registry, immutable_tenant, containers_env,
                                                                   image, arch_images, dockerd):
    api = Api(registry.url)
    reg = registry.host
    for local, tag in ((image, "src-a"), (arch_images["amd64"], "src-b")):
        _skopeo(containers_env, "copy", "--quiet", "--dest-tls-verify=false", local.storage_ref,
                f"docker://{reg}/imm/docker:{tag}")
    dockerd("pull", f"{reg}/imm/docker:src-a")
    dockerd("pull", f"{reg}/imm/docker:src-b")
    dockerd("tag", f"{reg}/imm/docker:src-a", f"{reg}/imm/app:3.0.0")
    dockerd("push", f"{reg}/imm/app:3.0.0")
    pushed = _digest(api, "3.0.0")
    again = dockerd("push", f"{reg}/imm/app:3.0.0")
    assert pushed in again.stdout, again.stdout
    dockerd("tag", f"{reg}/imm/docker:src-b", f"{reg}/imm/app:3.0.0")
    refused = dockerd("push", f"{reg}/imm/app:3.0.0", check=False)
    out = _refused(refused, "3.0.0")
    assert "denied" in out.lower()
    assert _digest(api, "3.0.0") == pushed


def test_retention_protects_immutable_tags_and_names_the_rule(registry, immutable_tenant, containers_env, image):
    api = Api(registry.url)
    _skopeo(containers_env, "copy", "--quiet", "--dest-tls-verify=false", image.storage_ref,
            f"docker://{registry.host}/imm/app:1.5.0")
    release = _digest(api, "1.5.0")
    # Keeps only the newest tag not named like a release: every release would be deleted.
    policy = {"rules": [{"repositories": "imm/app", "tags": {"glob": "dev*"}, "keep": {"latest_pushed": 1}}]}
    registry.cli("retention", "policy", "set", "--tenant", "imm", "--file", "-", stdin=json.dumps(policy))
    try:
        for dry in (["--dry-run"], []):
            report = json.loads(registry.cli("retention", "run", "--tenant", "imm", "--json", *dry))
            verdicts = {(v["repository"], v["tag"]): v for v in report["verdicts"] if v["tag"]}
            v = verdicts[("imm/app", "1.5.0")]
            assert v["action"] == "protect" and v["outcome"] == "kept", v
            assert "immutable (rule 1: repositories imm/**, tags semver >=1.0.0)" in v["reason"], v
            assert report["errors"] == [], report["errors"]
        assert _digest(api, "1.5.0") == release
    finally:
        registry.cli("retention", "policy", "delete", "--tenant", "imm")
