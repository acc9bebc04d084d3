"""registry.manifests: references checked in the repository, a failing put that writes nothing,
a second put of one manifest, and referrers in order."""

from __future__ import annotations

import json

from .common import OCI_MANIFEST, digest, manifest, names


async def test_manifest_needs_its_blobs_and_children_in_the_repository(registry):  # from tests/db/test_store.py
    layer = digest("layer")
    m = manifest([layer, layer])
    assert await registry.manifests.put("team/app", m, ["v1"]) == [layer, layer]
    assert await registry.manifests.get("team/app", "v1", by_digest=False) is None
    assert await registry.repositories.page(10, None) == []  # the repository row has no manifest

    await registry.blobs.link("team/app", layer, 5)
    assert await registry.manifests.put("team/app", m, ["v1", "latest", "v1"]) == []
    got = await registry.manifests.get("team/app", "v1", by_digest=False)
    assert (got.digest, got.media_type, got.size, got.content) == (m.digest, OCI_MANIFEST, len(m.content), m.content)
    head = await registry.manifests.get("team/app", m.digest, by_digest=True, with_content=False)
    assert head.content is None and head.size == len(m.content)

    index = manifest(children=[m.digest, digest("nope")], salt="index")
    assert await registry.manifests.put("team/app", index, []) == [digest("nope")]
    assert await registry.manifests.put("team/other", manifest(children=[m.digest]), []) == [m.digest]


async def test_referrers_by_subject_and_artifact_type(registry):  # from tests/db/test_store.py
    await registry.blobs.link("team/app", digest("l"), 1)
    subject = manifest([digest("l")])
    await registry.manifests.put("team/app", subject, ["v1"])
    sig = manifest([digest("l")], subject=subject.digest, artifact_type="application/sig", salt="sig")
    sbom = manifest([digest("l")], subject=subject.digest, artifact_type="application/sbom", salt="sbom")
    for m in (sig, sbom):
        assert await registry.manifests.put("team/app", m, []) == []
    found = await registry.manifests.referrers("team/app", subject.digest)
    assert {r.digest for r in found} == {sig.digest, sbom.digest}
    only = await registry.manifests.referrers("team/app", subject.digest, "application/sbom")
    assert [(r.digest, r.artifact_type, r.annotations_json, r.size) for r in only] == [
        (sbom.digest, "application/sbom", json.dumps({"salt": "sbom"}), len(sbom.content))]
    assert await registry.manifests.referrers("team/other", subject.digest) == []


async def test_referrers_come_in_the_order_they_were_stored_not_by_digest(registry):
    await registry.blobs.link("team/app", digest("l"), 1)
    subject = manifest([digest("l")])
    assert await registry.manifests.put("team/app", subject, []) == []
    referrers = [manifest([digest("l")], subject=subject.digest, artifact_type="application/x", salt=str(i))
                 for i in range(6)]
    stored = sorted(referrers, key=lambda m: m.digest, reverse=True)  # the reverse of digest order
    for m in stored:
        assert await registry.manifests.put("team/app", m, []) == []
    found = await registry.manifests.referrers("team/app", subject.digest)
    assert [r.digest for r in found] == [m.digest for m in stored]
    assert all(r.media_type == OCI_MANIFEST and r.artifact_type == "application/x" for r in found)
    assert await registry.manifests.referrers("team/app", subject.digest, "application/other") == []
    assert await registry.manifests.referrers("team/app", digest("no subject")) == []


async def test_a_put_with_a_missing_reference_writes_nothing(registry):
    await registry.blobs.link("team/app", digest("l"), 1)
    old = manifest([digest("l")], salt="old")
    assert await registry.manifests.put("team/app", old, ["v1"]) == []
    subject = old.digest
    broken = manifest([digest("l"), digest("gone")], children=[old.digest, digest("no child")], subject=subject,
                      artifact_type="application/x", salt="broken")
    assert await registry.manifests.put("team/app", broken, ["v1", "v2"]) == [digest("gone"), digest("no child")]
    assert await registry.manifests.get("team/app", broken.digest, by_digest=True) is None
    assert (await registry.manifests.get("team/app", "v1", by_digest=False)).digest == old.digest
    assert names(await registry.tags.page("team/app", 10, None)) == ["v1"]
    assert await registry.manifests.referrers("team/app", subject) == []
    summary = await registry.repositories.summary("team/app")
    assert (summary.tag_count, summary.manifest_count) == (1, 1)
    # Into a repository that did not exist: no manifest, but today the repository row stays (empty).
    assert await registry.manifests.put("team/new", broken, ["v1"]) == [digest("l"), digest("gone"), old.digest,
                                                                        digest("no child")]
    assert await registry.tags.page("team/new", 10, None) == []
    assert await registry.repositories.page(10, None) == ["team/app"]


async def test_a_second_put_keeps_one_row_and_moves_tags(registry):
    await registry.blobs.link("team/app", digest("l"), 1)
    m = manifest([digest("l")])
    assert await registry.manifests.put("team/app", m, ["v1"]) == []
    assert await registry.manifests.put("team/app", m, ["v2"]) == []
    assert names(await registry.tags.page("team/app", 10, None)) == ["v1", "v2"]
    assert (await registry.repositories.summary("team/app")).manifest_count == 1
    assert await registry.manifests.delete("team/app", m.digest)
    assert await registry.tags.page("team/app", 10, None) == []
    assert await registry.manifests.get("team/app", m.digest, by_digest=True) is None


async def test_the_pull_through_cache_puts_without_references(registry):
    m = manifest([digest("not here")], children=[digest("nor this")])
    assert await registry.manifests.put("cache/app", m, ["v1"], verify_references=False) == []
    got = await registry.manifests.get("cache/app", "v1", by_digest=False)
    assert (got.digest, got.content) == (m.digest, m.content)
    assert await registry.blobs.size_in("cache/app", digest("not here")) is None


async def test_get_is_per_repository_and_by_kind_of_reference(registry):
    await registry.blobs.link("team/app", digest("l"), 1)
    m = manifest([digest("l")], subject=digest("s"), artifact_type="application/x")
    assert await registry.manifests.put("team/app", m, ["v1"]) == []
    got = await registry.manifests.get("team/app", m.digest, by_digest=True)
    assert (got.subject, got.artifact_type) == (digest("s"), "application/x")
    assert await registry.manifests.get("team/app", m.digest, by_digest=False) is None  # not a tag
    assert await registry.manifests.get("team/app", "v1", by_digest=True) is None  # not a digest
    assert await registry.manifests.get("team/other", m.digest, by_digest=True) is None
    assert await registry.manifests.get("team/other", "v1", by_digest=False) is None
    assert not await registry.manifests.delete("team/other", m.digest)
