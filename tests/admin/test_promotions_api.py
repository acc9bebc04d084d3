"""Promotions through the admin API (docs/promotion.md), on both metadata stores: a promotion without
gates completes at once and the target serves the same manifest; gates refuse a manifest without the
required annotation (422, the failed requirement listed) and accept one whose config label has it; an
approval gate makes it pending (202) until a user with the role approves it; self-approval refused
unless allowed; rejection; a required referrer artifact type; across tenants only with pull on the
source and push on the target, and a source one may not pull answered exactly as one that does not
exist; the target's immutable tags; the gate document's validation; the traceability read."""

from __future__ import annotations

import json
import os

from hub.keys import STORE

from .conftest import audit_rows, call, field_errors, token
from tests.registry.conftest import bearer, sha256

REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
SIG = "application/vnd.example.signature"


async def push(client, repository: str, tag: str | None, *, annotations=None, labels=None, subject=None,
               artifact_type=None) -> str:
    """An image (a config with `labels`, one layer) or, with `subject`, a referrer; its digest."""
    tok = await token(client, f"repository:{repository}:pull,push", user="root", password="root-pw-123")
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}},
                         "n": os.urandom(4).hex()}).encode()
    layer = os.urandom(2000)
    for blob in (config, layer):
        r = await client.post(f"/v2/{repository}/blobs/uploads/?digest={sha256(blob)}", data=blob, headers=bearer(tok))
        assert r.status == 201, await r.text()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                            "size": len(layer)}]}
    if annotations:
        manifest["annotations"] = annotations
    if subject:
        manifest["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject[0],
                               "size": subject[1]}
        manifest["artifactType"] = artifact_type
    body = json.dumps(manifest).encode()
    r = await client.put(f"/v2/{repository}/manifests/{tag or sha256(body)}", data=body,
                         headers={**bearer(tok), "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return r.headers["Docker-Content-Digest"]


async def manifest_of(client, repository: str, reference: str) -> tuple[int, str | None]:
    tok = await token(client, f"repository:{repository}:pull", user="root", password="root-pw-123")
    r = await client.get(f"/v2/{repository}/manifests/{reference}", headers={
        **bearer(tok), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    return r.status, r.headers.get("Docker-Content-Digest")


async def gates(client, document: dict, tenant: str = "team") -> None:
    status, body, _ = await call(client, "PUT", f"/api/v1/tenants/{tenant}/promotion-gates", "tenant_admin"
                                 if tenant == "team" else "other_admin", json=document)
    assert status == 200, body


async def promote(client, source: str, target: str, role: str = "developer"):
    status, body, _ = await call(client, "POST", "/api/v1/promotions", role, json={"source": source, "target": target})
    return status, body


async def test_a_promotion_without_gates_completes_at_once(api):
    digest = await push(api, "team/app", "1.2", annotations={REVISION: "abc123"})
    status, body = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 201, body
    assert (body["state"], body["source"], body["target"], body["digest"]) == (
        "completed", f"team/app@{digest}", "team/prod:1.2", digest)
    assert body["gates"] == [] and body["requested_by"] == "alice" and body["copied"]["blobs"] == 2
    assert await manifest_of(api, "team/prod", "1.2") == (200, digest)
    rows = [r for r in await audit_rows(api) if r.action.startswith("promotion")]
    assert [(r.actor, r.action, r.target) for r in reversed(rows)] == [
        ("alice", "promotion.request", "team/prod:1.2"), ("alice", "promotion.complete", "team/prod:1.2")]
    assert (await call(api, "GET", f"/api/v1/promotions/{body['id']}", "guest"))[1] == body
    # By digest, to another tag of the same repository's sibling.
    status, again = await promote(api, f"team/app@{digest}", "team/prod:stable")
    assert status == 201 and again["source_reference"] == digest


async def test_a_gate_refuses_a_manifest_without_the_annotation_and_waits_for_approval(api):
    await gates(api, {"gates": [{"repositories": "team/prod", "annotations": [REVISION, SOURCE],
                                 "approval": {"role": "maintainer"}}]})
    await push(api, "team/app", "bare")
    before = len([r for r in await audit_rows(api) if r.action.startswith("promotion.")])
    status, problem = await promote(api, "team/app:bare", "team/prod:1.2")
    assert status == 422 and problem["type"] == "urn:daohub:problem:promotion-gates-failed", problem
    assert [(e["gate"], e["requirement"]) for e in problem["errors"]] == [
        ("1", f"annotation {REVISION}"), ("1", f"annotation {SOURCE}")]
    assert REVISION in problem["detail"]
    refused = [r for r in await audit_rows(api) if r.action.startswith("promotion.")]
    assert before == 0 and [(r.actor, r.action, r.target) for r in refused] == [
        ("alice", "promotion.refuse", "team/prod:1.2")]
    assert json.loads(refused[0].detail_json)["gates"][0]["passed"] is False
    assert (await call(api, "GET", "/api/v1/promotions"))[1]["items"] == []
    # The revision as an annotation, the source URL as a config label: both count.
    digest = await push(api, "team/app", "1.2", annotations={REVISION: "abc123"},
                        labels={SOURCE: "https://git.example/app"})
    status, pending = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 202 and pending["state"] == "pending", pending
    assert pending["approval_role"] == "maintainer" and pending["self_approval"] is False
    assert [c["passed"] for c in pending["gates"]] == [True, True, True]
    assert (await manifest_of(api, "team/prod", "1.2"))[0] == 404
    path = f"/api/v1/promotions/{pending['id']}"
    # alice: a developer, and the requester
    assert (await call(api, "POST", path + "/approve", "developer", json={}))[0] == 403
    assert (await call(api, "POST", path + "/approve", "guest", json={}))[0] == 403
    assert (await call(api, "POST", path + "/approve", "other_admin", json={}))[0] == 404  # learns nothing of it
    status, done, _ = await call(api, "POST", path + "/approve", "maintainer", json={"reason": "staging passed"})
    assert status == 200 and (done["state"], done["decided_by"], done["reason"]) == ("completed", "mary",
                                                                                     "staging passed")
    assert await manifest_of(api, "team/prod", "1.2") == (200, digest)
    assert (await call(api, "POST", path + "/approve", "maintainer", json={}))[0] == 409
    assert (await call(api, "POST", path + "/reject", "maintainer", json={}))[0] == 409
    listed = (await call(api, "GET", "/api/v1/promotions?state=completed", "guest"))[1]["items"]
    assert [p["id"] for p in listed] == [pending["id"]]


async def test_self_approval_is_refused_unless_the_gates_allow_it(api):
    await push(api, "team/app", "1.2")
    await gates(api, {"gates": [{"repositories": "team/**", "approval": {"role": "maintainer"}}]})
    status, pending = await promote(api, "team/app:1.2", "team/prod:1.2", role="maintainer")
    assert status == 202
    status, problem, _ = await call(api, "POST", f"/api/v1/promotions/{pending['id']}/approve", "maintainer", json={})
    assert status == 403 and "another user must approve it" in problem["detail"]
    assert (await call(api, "POST", f"/api/v1/promotions/{pending['id']}/approve", "tenant_admin"))[0] == 200
    await gates(api, {"gates": [{"repositories": "team/**",
                                 "approval": {"role": "maintainer", "allow_self_approval": True}}]})
    status, pending = await promote(api, "team/app:1.2", "team/prod:1.3", role="maintainer")
    assert status == 202 and pending["self_approval"] is True
    assert (await call(api, "POST", f"/api/v1/promotions/{pending['id']}/approve", "maintainer"))[0] == 200


async def test_rejected_and_withdrawn_promotions_copy_nothing(api):
    await push(api, "team/app", "1.2")
    await gates(api, {"gates": [{"repositories": "team/prod", "approval": {"role": "admin"}}]})
    _, first = await promote(api, "team/app:1.2", "team/prod:1.2")
    _, second = await promote(api, "team/app:1.2", "team/prod:1.3")
    assert (await call(api, "POST", f"/api/v1/promotions/{first['id']}/reject", "maintainer", json={}))[0] == 403
    status, rejected, _ = await call(api, "POST", f"/api/v1/promotions/{first['id']}/reject", "tenant_admin",
                                     json={"reason": "no"})
    assert status == 200
    assert (rejected["state"], rejected["decided_by"], rejected["reason"]) == ("rejected", "ada", "no")
    status, withdrawn, _ = await call(api, "POST", f"/api/v1/promotions/{second['id']}/reject", "developer")
    assert status == 200 and withdrawn["decided_by"] == "alice"
    assert (await manifest_of(api, "team/prod", "1.2"))[0] == 404
    assert [r.action for r in await audit_rows(api) if r.action.startswith("promotion.")][:2] == [
        "promotion.reject", "promotion.reject"]


async def test_a_required_referrer_artifact_type(api):
    await gates(api, {"gates": [{"repositories": "team/prod", "referrer_artifact_types": [SIG]}]})
    digest = await push(api, "team/app", "1.2")
    status, problem = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 422 and problem["errors"][0]["requirement"] == f"referrer {SIG}"
    _, size = await manifest_size(api, "team/app", digest)
    signature = await push(api, "team/app", None, subject=(digest, size), artifact_type=SIG)
    status, done = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 201 and done["copied"]["manifests"] == 2, done
    tok = await token(api, "repository:team/prod:pull", user="root", password="root-pw-123")
    r = await api.get(f"/v2/team/prod/referrers/{digest}", headers=bearer(tok))
    assert [m["digest"] for m in (await r.json())["manifests"]] == [signature]


async def manifest_size(client, repository: str, digest: str) -> tuple[str, int]:
    tok = await token(client, f"repository:{repository}:pull", user="root", password="root-pw-123")
    r = await client.get(f"/v2/{repository}/manifests/{digest}", headers={
        **bearer(tok), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    return digest, len(await r.read())


async def test_across_tenants_only_with_pull_on_the_source_and_push_on_the_target(api):
    digest = await push(api, "team/app", "1.2")
    await push(api, "other/secret", "x")
    # bob (admin of other) may not pull team/app: exactly the answer for a source that does not exist.
    hidden = await promote(api, "team/app:1.2", "other/app:1.2", role="other_admin")
    missing = await promote(api, "team/nothing:1.2", "other/app:1.2", role="other_admin")
    assert hidden[0] == missing[0] == 404
    assert hidden[1]["detail"].replace("team/app", "X") == missing[1]["detail"].replace("team/nothing", "X")
    # alice may pull team/app but not push into other/.
    assert (await promote(api, "team/app:1.2", "other/app:1.2"))[0] == 403
    assert (await promote(api, "other/secret:x", "team/app:x"))[0] == 404
    # The platform admin may do both; the target's gates are the target tenant's.
    await gates(api, {"gates": [{"repositories": "other/**", "annotations": [REVISION]}]}, tenant="other")
    assert (await promote(api, "team/app:1.2", "other/app:1.2", role="platform_admin"))[0] == 422
    assert (await promote(api, "team/app:1.2", "team/prod:1.2", role="platform_admin"))[0] == 201
    # A member of the source's tenant sees the promotion; one of neither does not.
    await call(api, "DELETE", "/api/v1/tenants/other/promotion-gates", "other_admin")
    status, crossed = await promote(api, "team/app:1.2", "other/app:1.2", role="platform_admin")
    assert status == 201 and crossed["digest"] == digest
    assert (await call(api, "GET", f"/api/v1/promotions/{crossed['id']}", "other_admin"))[0] == 200
    assert (await call(api, "GET", f"/api/v1/promotions/{crossed['id']}", "guest"))[0] == 200


async def test_the_targets_immutable_tags_hold(api):
    await push(api, "team/prod", "1.2")
    await call(api, "PUT", "/api/v1/tenants/team/immutable-tags", "tenant_admin",
               json={"rules": [{"repositories": "team/prod", "tags": {"glob": "*"}}]})
    await push(api, "team/app", "1.2")
    status, problem = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 403 and "immutable" in problem["detail"], problem
    assert (await call(api, "GET", "/api/v1/promotions"))[1]["items"] == []


async def test_bad_requests_and_gate_documents(api):
    for body, field in (({"source": "app:1", "target": "team/prod:1"}, "#/source"),
                        ({"source": "team/app:1", "target": "team/prod@sha256:" + "0" * 64}, "#/target"),
                        ({"source": "team/app", "target": "team/prod:1"}, "#/source"),
                        ({"source": "team/app:1"}, "#/target")):
        status, problem, _ = await call(api, "POST", "/api/v1/promotions", json=body)
        assert status == 422 and field in field_errors(problem), (body, problem)
    status, problem, _ = await call(api, "PUT", "/api/v1/tenants/team/promotion-gates", "tenant_admin", json={
        "gates": [{"repositories": "team/[", "annotations": "x"}, {"repositories": "team/**"},
                  {"repositories": "**", "approval": {"role": "boss"}}], "extra": 1})
    assert status == 422
    assert set(field_errors(problem)) == {"#/extra", "#/gates/0/repositories", "#/gates/0/annotations", "#/gates/1",
                                          "#/gates/2/approval"}, problem
    assert (await call(api, "PUT", "/api/v1/tenants/team/promotion-gates", "developer", json={"gates": []}))[0] == 403
    assert (await call(api, "GET", "/api/v1/tenants/team/promotion-gates", "tenant_admin"))[0] == 404
    assert (await call(api, "GET", "/api/v1/promotions/999", "tenant_admin"))[0] == 404


async def test_an_artifact_is_traced_to_its_revision_repositories_promotions_and_referrers(api):
    digest = await push(api, "team/app", "1.2", annotations={REVISION: "abc123"},
                        labels={SOURCE: "https://git.example/app", REVISION: "label-loses"})
    _, size = await manifest_size(api, "team/app", digest)
    signature = await push(api, "team/app", None, subject=(digest, size), artifact_type=SIG)
    _, done = await promote(api, "team/app:1.2", "team/prod:1.2")
    status, found, _ = await call(api, "GET", f"/api/v1/artifacts/{digest}", "guest")
    assert status == 200, found
    assert (found["revision"], found["source_url"]) == ("abc123", "https://git.example/app")
    assert found["repositories"] == [{"repository": "team/app", "tags": ["1.2"]},
                                     {"repository": "team/prod", "tags": ["1.2"]}]
    assert [p["id"] for p in found["promotions"]] == [done["id"]]
    assert [(r["digest"], r["artifact_type"], r["repositories"]) for r in found["referrers"]] == [
        (signature, SIG, ["team/app", "team/prod"])]
    assert (await call(api, "GET", f"/api/v1/artifacts/{digest}", "other_admin"))[0] == 404
    assert (await call(api, "GET", "/api/v1/artifacts/sha256:" + "1" * 64, "guest"))[0] == 404
    assert (await call(api, "GET", "/api/v1/artifacts/nonsense", "guest"))[0] == 404
    events = [e.type for e in await api.server.app[STORE].events_after(0, 10_000)]
    assert events.count("io.daohub.promotion.completed") == 1


async def test_the_platforms_gates_apply_to_every_tenant_with_the_tenants(api):
    status, body, _ = await call(api, "PUT", "/api/v1/promotion-gates", json={"gates": [
        {"repositories": "**/prod", "annotations": [SOURCE]}]})
    assert status == 200 and body["tenant"] is None, body
    assert (await call(api, "PUT", "/api/v1/promotion-gates", "tenant_admin", json={"gates": []}))[0] == 403
    await gates(api, {"gates": [{"repositories": "team/prod", "annotations": [REVISION]}]})
    await push(api, "team/app", "1.2", annotations={REVISION: "abc"})
    status, problem = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 422
    assert [(e["scope"], e["gate"], e["requirement"]) for e in problem["errors"]] == [
        ("platform", "1", f"annotation {SOURCE}")]
    assert "platform gate 1 (**/prod)" in problem["detail"]
    await push(api, "team/app", "1.2", annotations={REVISION: "abc", SOURCE: "https://git.example/app"})
    status, done = await promote(api, "team/app:1.2", "team/prod:1.2")
    assert status == 201 and [(c["scope"], c["passed"]) for c in done["gates"]] == [("platform", True),
                                                                                  ("tenant", True)]
    assert (await promote(api, "team/app:1.2", "team/stage:1.2"))[0] == 201  # no gate matches
    assert (await call(api, "DELETE", "/api/v1/promotion-gates"))[0] == 204
    assert (await call(api, "GET", "/api/v1/promotion-gates"))[0] == 404
    rows = [(r.action, r.target, r.tenant) for r in await audit_rows(api) if r.action.startswith("promotion_gates")]
    assert rows[0] == ("promotion_gates.delete", "platform", None) and rows[-1] == ("promotion_gates.set", "platform",
                                                                                    None)


async def test_an_index_is_promoted_with_its_images_and_a_retag_in_one_repository(api):
    children = [await push(api, "team/app", None) for _ in range(2)]
    sizes = [(await manifest_size(api, "team/app", d))[1] for d in children]
    tok = await token(api, "repository:team/app:pull,push", user="root", password="root-pw-123")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
                                       "size": n, "platform": {"architecture": arch, "os": "linux"}}
                                      for d, n, arch in zip(children, sizes, ("amd64", "arm64"), strict=True)],
                        "annotations": {REVISION: "abc"}}).encode()
    r = await api.put("/v2/team/app/manifests/multi", data=index, headers={
        **bearer(tok), "Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status == 201, await r.text()
    await gates(api, {"gates": [{"repositories": "team/**", "annotations": [REVISION]}]})
    status, done = await promote(api, "team/app:multi", "team/prod:multi")
    assert status == 201, done
    assert done["copied"]["manifests"] == 3 and done["copied"]["blobs"] == 4
    for d in children:
        assert (await manifest_of(api, "team/prod", d))[0] == 200
    status, retag = await promote(api, "team/app:multi", "team/app:stable")
    assert status == 201 and retag["copied"]["manifests_new"] == 0
    assert (await promote(api, "team/app:multi", "team/app:multi"))[0] == 422


async def test_gc_keeps_what_a_promotion_linked_after_the_source_is_gone(api):
    from hub.keys import GC

    digest = await push(api, "team/app", "1.2", annotations={REVISION: "abc"})
    _, size = await manifest_size(api, "team/app", digest)
    signature = await push(api, "team/app", None, subject=(digest, size), artifact_type=SIG)
    assert (await promote(api, "team/app:1.2", "team/prod:1.2"))[0] == 201
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app", "maintainer"))[0] == 204
    report = await api.server.app[GC].run(grace_seconds=0)
    assert not report.errors and report.counts["blobs_deleted"] >= 2, report.as_dict()  # the seed's images went
    tok = await token(api, "repository:team/prod:pull", user="root", password="root-pw-123")
    r = await api.get(f"/v2/team/prod/manifests/{digest}", headers={
        **bearer(tok), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200
    body = json.loads(await r.read())
    blobs = [d["digest"] for d in [body["config"], *body["layers"]]]
    assert not {b["digest"] for b in report.blobs} & set(blobs)
    for blob in blobs:
        got = await api.get(f"/v2/team/prod/blobs/{blob}", headers=bearer(tok))
        assert got.status == 200 and sha256(await got.read()) == blob
    assert (await manifest_of(api, "team/prod", signature))[0] == 200  # the referrer stays with its subject


async def test_a_pull_through_cache_namespace_is_no_target_even_for_the_platform_admin(api):
    await push(api, "team/app", "1.2")
    status, body, _ = await call(api, "POST", "/api/v1/upstreams", json={"name": "quay.io", "url": "https://quay.io"})
    assert status == 201, body
    status, problem = await promote(api, "team/app:1.2", "quay.io/team/app:1.2", role="platform_admin")
    assert status == 403 and "quay.io/team/app" in problem["detail"], problem
