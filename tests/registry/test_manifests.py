"""Manifests: every format, exact bytes, validation errors."""

from __future__ import annotations

import base64
import json

import pytest

from .conftest import Repo, error_code, sha256, sha512

NAME = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY = b"{}"
EMPTY_DESC = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY), "size": 2}


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
async def test_push_and_get_by_tag_and_digest(client, media_type):
    repo = Repo(client, NAME)
    digest, body = await repo.push_image("v1", media_type=media_type)
    assert digest == sha256(body)
    for ref in ("v1", digest):
        r = await client.get(f"/v2/{NAME}/manifests/{ref}")
        assert r.status == 200
        assert await r.read() == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        h = await client.head(f"/v2/{NAME}/manifests/{ref}")
        assert h.status == 200
        assert h.headers["Content-Length"] == str(len(body))
        assert h.headers["Docker-Content-Digest"] == digest
        assert h.headers["Content-Type"] == media_type


async def test_exact_bytes_preserved(client):
    repo = Repo(client, NAME)
    config = await repo.push_blob(b'{"os":"linux"}')
    # Odd whitespace and key order must survive byte for byte.
    body = ('{\n  "schemaVersion" :2,"mediaType": "%s",\n"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
            '"digest":"%s","size":14},   "layers":[],"custom":{"x":[1,2]}}\n' % (OCI_MANIFEST, config)).encode()
    r = await client.put(f"/v2/{NAME}/manifests/odd", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/{NAME}/manifests/odd")
    assert await r.read() == body


async def test_index_and_manifest_list(client):
    repo = Repo(client, NAME)
    children = [await repo.push_image(None) for _ in range(2)]
    for media_type in (OCI_INDEX, DOCKER_LIST):
        child_type = OCI_MANIFEST
        index = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
            {"mediaType": child_type, "digest": d, "size": len(b),
             "platform": {"architecture": arch, "os": "linux"}} for (d, b), arch in zip(children, ("amd64", "arm64"))]}
        body = json.dumps(index).encode()
        r = await client.put(f"/v2/{NAME}/manifests/multi", data=body, headers={"Content-Type": media_type})
        assert r.status == 201, await r.text()
        r = await client.get(f"/v2/{NAME}/manifests/multi")
        assert r.headers["Content-Type"] == media_type and await r.read() == body


async def test_nested_index(client):
    repo = Repo(client, NAME)
    d, b = await repo.push_image(None)
    inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(b)}]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(inner)}", data=inner, headers={"Content-Type": OCI_INDEX})
    assert r.status == 201
    outer = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(inner), "size": len(inner)}]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/nested", data=outer, headers={"Content-Type": OCI_INDEX})
    assert r.status == 201, await r.text()


async def test_index_with_missing_child(client):
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]}).encode()
    await Repo(client, NAME).push_blob(b"x")
    r = await client.put(f"/v2/{NAME}/manifests/bad", data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status == 400 and await error_code(r) == "MANIFEST_BLOB_UNKNOWN"


async def test_artifact_with_empty_config_and_no_layers(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example+type",
                "config": EMPTY_DESC, "layers": []}
    body = json.dumps(manifest).encode()
    r = await client.put(f"/v2/{NAME}/manifests/artifact", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()


async def test_data_field(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    desc = dict(EMPTY_DESC, data=base64.b64encode(EMPTY).decode())
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc, "layers": [desc]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/data", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    bad = dict(EMPTY_DESC, data=base64.b64encode(b"[]").decode())
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": bad, "layers": []}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/data2", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"


async def test_non_distributable_layer_need_not_exist(client):
    repo = Repo(client, NAME)
    config = await repo.push_blob(b'{"os":"windows"}')
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                  "size": 16},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                   "digest": sha256(b"foreign"), "size": 7,
                                   "urls": ["https://example.invalid/layer"]}]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/win", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()


async def test_missing_blob(client):
    repo = Repo(client, NAME)
    config = await repo.push_blob(b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": sha256(b"missing"), "size": 7}]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400
    body_json = await r.json()
    assert body_json["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert sha256(b"missing") in json.dumps(body_json)
    r = await client.get(f"/v2/{NAME}/manifests/t")
    assert r.status == 404 and await error_code(r) == "MANIFEST_UNKNOWN"


async def test_blob_of_another_repository_does_not_count(client):
    other = Repo(client, "team/other")
    layer = await other.push_blob(b"layer in other repo")
    repo = Repo(client, NAME)
    config = await repo.push_blob(b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                                   "size": 19}]}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_BLOB_UNKNOWN"


@pytest.mark.parametrize("body,content_type", [
    (b"not json", OCI_MANIFEST),
    (b"[1,2,3]", OCI_MANIFEST),
    (b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}', "application/json"),
    (b'{"schemaVersion": 3, "mediaType": "%s"}' % OCI_MANIFEST.encode(), OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "application/x-unknown"}', "application/x-unknown"),
    (b'{"schemaVersion": 2, "mediaType": "%s", "config": {}, "layers": []}' % OCI_MANIFEST.encode(), OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "%s", "config": {"mediaType": "a/b", "digest": "sha256:x", "size": 1}}'
     % OCI_MANIFEST.encode(), OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "%s", "manifests": "nope"}' % OCI_INDEX.encode(), OCI_INDEX),
    (b'{"schemaVersion": 2, "mediaType": "%s", "manifests": []}' % OCI_INDEX.encode(), OCI_MANIFEST),
    (b"\xff\xfe\x00garbage", OCI_MANIFEST),
])
async def test_malformed_manifests(client, body, content_type):
    r = await client.put(f"/v2/{NAME}/manifests/bad", data=body, headers={"Content-Type": content_type})
    assert r.status == 400, await r.text()
    assert await error_code(r) == "MANIFEST_INVALID"


async def test_oversized_manifest(client, config):
    limit = config.registry.max_manifest_bytes
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                       "annotations": {"pad": "x" * limit}}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/big", data=body, headers={"Content-Type": OCI_INDEX})
    assert r.status == 413
    r = await client.get(f"/v2/{NAME}/manifests/big")
    assert r.status == 404


async def test_large_manifest_under_limit(client, config):
    # A big-but-legal manifest (many annotations) round-trips.
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    annotations = {f"key.{i}": "v" * 100 for i in range(400)}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": [],
                       "annotations": annotations}).encode()
    assert len(body) < config.registry.max_manifest_bytes
    r = await client.put(f"/v2/{NAME}/manifests/large", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    r = await client.get(f"/v2/{NAME}/manifests/large")
    assert await r.read() == body


async def test_put_by_digest_must_match(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": []}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(b'other')}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    r = await client.put(f"/v2/{NAME}/manifests/{sha512(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert r.headers["Docker-Content-Digest"] == sha512(body)
    r = await client.get(f"/v2/{NAME}/manifests/{sha512(body)}")
    assert r.status == 200 and await r.read() == body


async def test_put_by_digest_with_several_tags(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": []}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}?tag=a&tag=b&tag=c", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert (await r.json())["tags"] == ["a", "b", "c"]
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}?tag=bad/tag", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400


async def test_content_type_mismatch(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": []}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/x", data=body, headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"


@pytest.mark.parametrize("tag", ["-bad", ".bad", "a" * 129, "a:b", "tag%2F..%2F..", "%2e%2e"])
async def test_invalid_tags(client, tag):
    from yarl import URL

    url = URL(f"/v2/{NAME}/manifests/{tag}", encoded=True)
    r = await client.put(url, data=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert r.status in (400, 404)
    assert await error_code(r) in ("MANIFEST_INVALID", "DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED")
    r = await client.get(url)
    assert r.status in (400, 404)


async def test_retag_moves_tag(client):
    repo = Repo(client, NAME)
    first, _ = await repo.push_image("moving")
    second, _ = await repo.push_image("moving")
    assert first != second
    r = await client.get(f"/v2/{NAME}/manifests/moving")
    assert r.headers["Docker-Content-Digest"] == second
    r = await client.get(f"/v2/{NAME}/manifests/{first}")
    assert r.status == 200


async def test_delete_by_digest_removes_tags(client):
    repo = Repo(client, NAME)
    digest, _ = await repo.push_image("gone")
    await repo.push_image("stays")
    r = await client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert r.status == 202
    for ref in (digest, "gone"):
        r = await client.get(f"/v2/{NAME}/manifests/{ref}")
        assert r.status == 404 and await error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert (await r.json())["tags"] == ["stays"]
    r = await client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert r.status == 404 and await error_code(r) == "MANIFEST_UNKNOWN"


async def test_delete_tag_keeps_manifest(client):
    repo = Repo(client, NAME)
    digest, _ = await repo.push_image("t1")
    r = await client.delete(f"/v2/{NAME}/manifests/t1")
    assert r.status == 202
    assert (await client.get(f"/v2/{NAME}/manifests/t1")).status == 404
    assert (await client.get(f"/v2/{NAME}/manifests/{digest}")).status == 200


async def test_unknown_repository_and_manifest(client):
    r = await client.get("/v2/no/such/manifests/latest")
    assert r.status == 404 and await error_code(r) == "NAME_UNKNOWN"
    await Repo(client, NAME).push_image("v1")
    r = await client.get(f"/v2/{NAME}/manifests/v2")
    assert r.status == 404 and await error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.head(f"/v2/{NAME}/manifests/{sha256(b'x')}")
    assert r.status == 404


async def test_subject_sets_oci_subject_header_even_if_missing(client):
    repo = Repo(client, NAME)
    await repo.push_blob(EMPTY)
    missing_subject = {"mediaType": OCI_MANIFEST, "digest": sha256(b"not pushed"), "size": 10}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
                       "config": EMPTY_DESC, "layers": [], "subject": missing_subject}).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    assert r.headers["OCI-Subject"] == missing_subject["digest"]


def _image(config: str, config_size: int, layers: list[tuple[str, int]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                  "size": config_size},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
                                  for d, s in layers]}).encode()


@pytest.mark.parametrize("size", [2**70, 2**63, -1, True, 1.5, "3", None])
async def test_descriptor_size_outside_int64_is_refused(client, size):
    repo = Repo(client, NAME)
    config = await repo.push_blob(EMPTY)
    missing = sha256(b"never pushed")
    for layers in ([(missing, size)], [(await repo.push_blob(b"layer"), size)]):
        r = await client.put(f"/v2/{NAME}/manifests/big", data=_image(config, 2, layers),
                             headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID", await r.text()
    assert (await client.get(f"/v2/{NAME}/manifests/big")).status == 404


async def test_descriptor_size_must_match_the_linked_blob(client):
    repo = Repo(client, NAME)
    config = await repo.push_blob(EMPTY)
    layer = await repo.push_blob(b"x" * 1000)
    for wrong in (999, 1001, 0, 2**63 - 1):
        r = await client.put(f"/v2/{NAME}/manifests/t", data=_image(config, 2, [(layer, wrong)]),
                             headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID", await r.text()
        assert (await r.json())["errors"][0]["detail"]["mismatched"] == [
            {"digest": layer, "size": wrong, "stored_size": 1000}]
    r = await client.put(f"/v2/{NAME}/manifests/t", data=_image(config, 3, [(layer, 1000)]),
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"  # the config's size
    assert (await client.get(f"/v2/{NAME}/manifests/t")).status == 404
    # One digest given two sizes in one manifest.
    r = await client.put(f"/v2/{NAME}/manifests/t", data=_image(config, 2, [(config, 3)]),
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"
    # The largest size int64 holds is still a size: for a blob the repository lacks, it is unknown.
    r = await client.put(f"/v2/{NAME}/manifests/t", data=_image(config, 2, [(sha256(b"nope"), 2**63 - 1)]),
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = await client.put(f"/v2/{NAME}/manifests/t", data=_image(config, 2, [(layer, 1000)]),
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201


async def test_index_child_size_must_match_the_stored_manifest(client):
    digest, body = await Repo(client, NAME).push_image(None)
    for size, status in ((len(body) + 1, 400), (len(body), 201)):
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}]}).encode()
        r = await client.put(f"/v2/{NAME}/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX})
        assert r.status == status, await r.text()
    assert (await r.read()) == b"" and r.status == 201


@pytest.mark.parametrize("depth", [1_000, 10_000])
async def test_deeply_nested_manifest_is_invalid_not_a_server_error(client, depth):
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth):
        body = ('{"schemaVersion": 2, "mediaType": "%s", "manifests": [], "x": %s}' % (OCI_INDEX, nested)).encode()
        r = await client.put(f"/v2/{NAME}/manifests/deep", data=body, headers={"Content-Type": OCI_INDEX})
        assert r.status == 400, await r.text()
        assert await error_code(r) == "MANIFEST_INVALID"


async def _empty_artifact(client) -> bytes:
    """The bytes of a manifest with the empty config and no layers, its config pushed."""
    await Repo(client, NAME).push_blob(EMPTY)
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY_DESC, "layers": []}).encode()


async def test_tag_parameters_create_every_tag_with_one_oci_tag_header_each(client):
    body = await _empty_artifact(client)
    digest = sha256(body)
    r = await client.put(f"/v2/{NAME}/manifests/{digest}?tag=v1&tag=v1.2&tag=latest&tag=v1", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    assert r.headers.getall("OCI-Tag") == ["v1", "v1.2", "latest"]
    for tag in ("v1", "v1.2", "latest"):
        r = await client.get(f"/v2/{NAME}/manifests/{tag}")
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == digest
    # Without tag parameters, no OCI-Tag.
    r = await client.put(f"/v2/{NAME}/manifests/{digest}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and "OCI-Tag" not in r.headers


@pytest.mark.parametrize("bad", ["-bad", "a" * 129, "bad/tag", ""])
async def test_one_invalid_tag_parameter_creates_no_tag(client, bad):
    old_digest, _ = await Repo(client, NAME).push_image("keep")
    body = await _empty_artifact(client)
    digest = sha256(body)
    r = await client.put(f"/v2/{NAME}/manifests/{digest}", params=[("tag", "a"), ("tag", bad), ("tag", "keep")],
                         data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"
    assert "OCI-Tag" not in r.headers
    assert (await (await client.get(f"/v2/{NAME}/tags/list")).json())["tags"] == ["keep"]
    assert (await client.get(f"/v2/{NAME}/manifests/keep")).headers["Docker-Content-Digest"] == old_digest
    assert (await client.get(f"/v2/{NAME}/manifests/{digest}")).status == 404


async def test_tag_parameters_need_a_digest_reference(client):
    body = await _empty_artifact(client)
    r = await client.put(f"/v2/{NAME}/manifests/v1?tag=v2", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_code(r) == "MANIFEST_INVALID"
    assert (await (await client.get(f"/v2/{NAME}/tags/list")).json())["tags"] == []
