"""Blob reads (ranges, HEAD, delete), tags and catalog pagination, referrers, misc endpoints."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import Repo, error_code, raw_request, sha256

NAME = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
async def blob(client):
    data = os.urandom(100_000)
    digest = await Repo(client, NAME).push_blob(data)
    return data, digest


async def test_head_blob(client, blob):
    data, digest = blob
    r = await client.head(f"/v2/{NAME}/blobs/{digest}")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    assert await r.read() == b""


@pytest.mark.parametrize("header,start,end", [
    ("bytes=0-99", 0, 99), ("bytes=1000-", 1000, 99_999), ("bytes=-500", 99_500, 99_999),
    ("bytes=99999-99999", 99_999, 99_999), ("bytes=50-200000", 50, 99_999),
])
async def test_range_requests(client, blob, header, start, end):
    data, digest = blob
    r = await client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
    assert r.status == 206
    assert await r.read() == data[start:end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"


async def test_blob_unknown(client, blob):
    r = await client.get(f"/v2/{NAME}/blobs/{sha256(b'nothing')}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"
    r = await client.get(f"/v2/{NAME}/blobs/sha256:nothex")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    # A digest that exists only in another repository is unknown here.
    r = await client.get(f"/v2/team/other/blobs/{blob[1]}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"
    r = await client.head(f"/v2/team/other/blobs/{blob[1]}")
    assert r.status == 404


async def test_delete_blob(client, blob):
    _, digest = blob
    r = await client.delete(f"/v2/{NAME}/blobs/{digest}")
    assert r.status == 202
    r = await client.head(f"/v2/{NAME}/blobs/{digest}")
    assert r.status == 404
    r = await client.delete(f"/v2/{NAME}/blobs/{digest}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"


async def test_delete_in_one_repo_keeps_other(client, blob):
    data, digest = blob
    await Repo(client, "team/second").push_blob(data)
    await client.delete(f"/v2/{NAME}/blobs/{digest}")
    r = await client.get(f"/v2/team/second/blobs/{digest}")
    assert r.status == 200 and await r.read() == data


async def test_tags_pagination(client):
    repo = Repo(client, NAME)
    await repo.push_blob(b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                       "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"),
                                  "size": 2}}).encode()
    tags = sorted(f"t{i:02d}" for i in range(25)) + ["Z", "latest"]
    query = "&".join(f"tag={t}" for t in tags)
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}?{query}", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    expected = sorted(tags)
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert (await r.json()) == {"name": NAME, "tags": expected}
    assert "Link" not in r.headers
    seen, url = [], f"/v2/{NAME}/tags/list?n=10"
    while url:
        r = await client.get(url)
        page = (await r.json())["tags"]
        assert len(page) <= 10
        seen += page
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
        if link:
            assert link.endswith('rel="next"')
    assert seen == expected
    r = await client.get(f"/v2/{NAME}/tags/list?n=5&last=t10")
    assert (await r.json())["tags"] == ["t11", "t12", "t13", "t14", "t15"]
    r = await client.get(f"/v2/{NAME}/tags/list?n=0")
    assert (await r.json())["tags"] == []
    for bad in ("abc", "-1", "\u00b2"):  # "²" is a digit to str.isdigit, not to int()
        r = await client.get(f"/v2/{NAME}/tags/list", params={"n": bad})
        assert r.status == 400 and await error_code(r) == "UNSUPPORTED"
    r = await client.get(f"/v2/{NAME}/tags/list?n=" + "9" * 5000)
    assert r.status == 200 and (await r.json())["tags"] == expected
    r = await client.get("/v2/no/such/tags/list")
    assert r.status == 404 and await error_code(r) == "NAME_UNKNOWN"


async def test_catalog_pagination(client):
    names = [f"team/repo{i:02d}" for i in range(12)] + ["alpha/one", "zeta/deep/name"]
    for name in names:
        await Repo(client, name).push_image("v1", layers=1)
    # A repository with only an upload in it is not listed.
    await client.post("/v2/team/empty/blobs/uploads/")
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == sorted(names)
    seen, url = [], "/v2/_catalog?n=5"
    while url:
        r = await client.get(url)
        seen += (await r.json())["repositories"]
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert seen == sorted(names)


async def test_referrers(client):
    repo = Repo(client, NAME)
    subject_digest, subject_body = await repo.push_image("v1")
    await repo.push_blob(b"{}")
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2}
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_body)}
    pushed = {}
    for artifact_type in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                           "config": empty, "layers": [], "subject": subject,
                           "annotations": {"org.example.kind": artifact_type}}).encode()
        r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}", data=body,
                             headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
        assert r.headers["OCI-Subject"] == subject_digest
        pushed[artifact_type] = (sha256(body), len(body))
    # An artifact whose type comes from config.mediaType (no artifactType field).
    await repo.push_blob(b'{"k":1}')
    cfg = {"mediaType": "application/vnd.example.config", "digest": sha256(b'{"k":1}'), "size": 7}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [],
                       "subject": subject}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201

    r = await client.get(f"/v2/{NAME}/referrers/{subject_digest}")
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = await r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert len(by_digest) == 3
    for artifact_type, (digest, size) in pushed.items():
        entry = by_digest[digest]
        assert entry == {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "artifactType": artifact_type,
                         "annotations": {"org.example.kind": artifact_type}}
    assert by_digest[sha256(body)]["artifactType"] == "application/vnd.example.config"
    assert "OCI-Filters-Applied" not in r.headers

    r = await client.get(f"/v2/{NAME}/referrers/{subject_digest}?artifactType=application/vnd.example.sig")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in (await r.json())["manifests"]] == [pushed["application/vnd.example.sig"][0]]

    # Unknown subject, unknown repository: an empty index, not an error.
    for url in (f"/v2/{NAME}/referrers/{sha256(b'none')}", f"/v2/no/repo/referrers/{subject_digest}"):
        r = await client.get(url)
        assert r.status == 200 and (await r.json())["manifests"] == []
    r = await client.get(f"/v2/{NAME}/referrers/not-a-digest")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"


@pytest.mark.parametrize("name", ["UPPER/case", "a//b", "-lead/x", "a/b-", "..", "a/../b", "a/./b", "x" * 256,
                                  "a__b___c", "a/%2e%2e/b"])
async def test_invalid_names(client, name):
    for url in (f"/v2/{name}/tags/list", f"/v2/{name}/manifests/latest", f"/v2/{name}/blobs/uploads/"):
        method = "POST" if url.endswith("uploads/") else "GET"
        status, body = await raw_request(client, method, url)
        assert status == 400, (url, status)
        assert body["errors"][0]["code"] == "NAME_INVALID"


async def test_traversal_never_reaches_another_repository(client):
    data = os.urandom(100)
    digest = await Repo(client, "b").push_blob(data)
    for path in (f"/v2/a/../b/blobs/{digest}", f"/v2/a/%2e%2e/b/blobs/{digest}",
                 f"/v2/a/%252e%252e/b/blobs/{digest}", f"/v2/b/blobs/..%2f..%2f{digest}"):
        status, body = await raw_request(client, "GET", path)
        assert status in (400, 404), path
        assert body["errors"][0]["code"] in ("NAME_INVALID", "DIGEST_INVALID", "UNSUPPORTED")


async def test_api_version_and_headers(client):
    r = await client.get("/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.headers["X-Request-Id"]
    r = await client.get("/v2/", headers={"X-Request-Id": "abc123"})
    assert r.headers["X-Request-Id"] == "abc123"


async def test_wrong_method_is_405(client):
    r = await client.post(f"/v2/{NAME}/tags/list")
    assert r.status == 405 and await error_code(r) == "UNSUPPORTED"


async def test_health_ready_metrics(client, blob):
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["checks"] == {"metadata": "ok", "storage": "ok"}
    r = await client.get("/metrics")
    text = await r.text()
    assert 'daohub_http_requests_total{method="POST",route="start_blob_upload",status="201"}' in text
    assert "daohub_blob_bytes_received_total 100000.0" in text


SPEC_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
              "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
              "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"}


@pytest.mark.parametrize("header", [
    "items=0-1",                 # another unit: ignored (RFC 9110 §14.2)
    "bytes=0-1,4-5",             # several satisfiable ranges: served as if there were no Range
    "bytes=0-1, 200000-",        # several, one of them satisfiable
    "bytes=5-2",                 # not a valid range-spec
    "bytes=abc", "bytes=-", "bytes 0-1",
])
async def test_ranges_that_are_ignored_get_the_whole_blob(client, blob, header):
    data, digest = blob
    r = await client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
    assert r.status == 200, header
    assert "Content-Range" not in r.headers
    assert await r.read() == data


@pytest.mark.parametrize("header,start,end", [
    ("bytes=0-1,", 0, 1),                        # an empty list element is no second range
    ("bytes=0-" + "9" * 5000, 0, 99_999),        # a last-byte-pos past any int64 is the end
    ("BYTES=10-19", 10, 19),
])
async def test_odd_single_ranges(client, blob, header, start, end):
    data, digest = blob
    r = await client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert await r.read() == data[start:end + 1]


@pytest.mark.parametrize("header", ["bytes=100000-", "bytes=200000-300000", "bytes=-0",
                                    "bytes=100000-,200000-", "bytes=" + "9" * 5000 + "-"])
async def test_unsatisfiable_range_of_a_blob_that_exists(client, blob, header):
    _, digest = blob
    r = await client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
    assert r.status == 416
    assert r.headers["Content-Range"] == "bytes */100000"
    code = await error_code(r)
    assert code != "BLOB_UNKNOWN" and code in SPEC_CODES
