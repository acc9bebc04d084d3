"""appstore.artifact: packing an app version the way `docker compose publish` does, and reading
a pushed one back under strict limits."""

from __future__ import annotations

import hashlib
import json

import pytest

from appstore import artifact
from appstore.artifact import ArtifactInvalid, Icon

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
COMPOSE = "services:\n  web:\n    image: nginx:${TAG:-1.27}\n"
METADATA = {"schemaVersion": 1, "app": {"key": "web", "title": "Web"},
            "version": {"version": "1.0.0", "composeFiles": ["compose.yaml"], "parameters": []}}


def fetcher(packed: artifact.PackedArtifact, tamper: dict[str, bytes] | None = None):
    blobs = {b.digest: b.data for b in packed.blobs}
    blobs.update(tamper or {})

    async def fetch(desc: artifact.Descriptor) -> bytes:
        return blobs[desc.digest]

    return fetch


def test_pack_has_the_compose_publish_shape():
    packed = artifact.pack([("compose.yaml", COMPOSE)], METADATA, Icon("icon.png", PNG, "image/png"),
                           title="Web", version="1.0.0", description="A web server")
    doc = json.loads(packed.manifest)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["artifactType"] == "application/vnd.docker.compose.project"
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                             "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
    compose, metadata, icon = doc["layers"]
    assert compose["mediaType"] == "application/vnd.docker.compose.file+yaml"
    assert compose["annotations"] == {"com.docker.compose.file": "compose.yaml"}
    assert metadata["mediaType"] == "application/vnd.daohub.app.metadata.v1+json"
    assert icon["mediaType"] == "image/png" and icon["annotations"] == {"org.opencontainers.image.title": "icon.png"}
    assert doc["annotations"] == {"org.opencontainers.image.title": "Web", "org.opencontainers.image.version": "1.0.0",
                                  "org.opencontainers.image.description": "A web server"}
    # Every descriptor matches a blob, the config first.
    assert [b.descriptor() for b in packed.blobs] == [doc["config"], *doc["layers"]]
    assert packed.digest == "sha256:" + hashlib.sha256(packed.manifest).hexdigest()


def test_pack_is_deterministic():
    one = artifact.pack([("compose.yaml", COMPOSE)], METADATA, title="Web", version="1.0.0")
    two = artifact.pack([("compose.yaml", COMPOSE.encode())], dict(reversed(METADATA.items())), title="Web",
                        version="1.0.0")
    assert one.manifest == two.manifest


async def test_round_trip():
    files = [("compose.yaml", COMPOSE), ("compose.prod.yaml", "services:\n  web:\n    restart: always\n")]
    packed = artifact.pack(files, METADATA, Icon("logo.png", PNG, "image/png"))
    found = await artifact.unpack(packed.manifest, fetcher(packed))
    assert found.compose_files == tuple(files)
    assert found.metadata == METADATA
    assert found.icon is not None and found.icon.media_type == "image/png" and found.icon.size == len(PNG)
    assert found.icon_name == "logo.png"


async def test_plain_compose_publish_artifact_has_no_metadata():
    packed = artifact.pack([("compose.yaml", COMPOSE)])
    found = await artifact.unpack(packed.manifest, fetcher(packed))
    assert found.metadata is None and found.icon is None and found.compose_files == (("compose.yaml", COMPOSE),)


def test_pre_oci_1_1_clients_declare_the_type_in_the_config():
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)]).manifest)
    del doc["artifactType"]
    assert not artifact.is_app_manifest(doc)
    doc["config"]["mediaType"] = artifact.ARTIFACT_TYPE
    assert artifact.is_app_manifest(doc)
    assert artifact.read_layout(doc).compose[0][0] == "compose.yaml"


def test_compose_file_name_falls_back_to_the_oras_title():
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)]).manifest)
    doc["layers"][0]["annotations"] = {"org.opencontainers.image.title": "docker-compose.yml"}
    assert artifact.read_layout(doc).compose[0][0] == "docker-compose.yml"


@pytest.mark.parametrize("name", ["../compose.yaml", "a/b.yaml", "..", ".", ".hidden", "", "x" * 200,
                                  "/etc/passwd", "c:\\x.yaml", "a\x00b", "name with space.yaml"])
def test_file_names_cannot_traverse(name):
    with pytest.raises(ArtifactInvalid):
        artifact.pack([(name, COMPOSE)])
    with pytest.raises(ArtifactInvalid):
        artifact.pack([("compose.yaml", COMPOSE)], icon=Icon(name, PNG, "image/png"))
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)], icon=Icon("i.png", PNG, "image/png")).manifest)
    doc["layers"][0]["annotations"] = {"com.docker.compose.file": name}
    with pytest.raises(ArtifactInvalid):
        artifact.read_layout(doc)
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)], icon=Icon("i.png", PNG, "image/png")).manifest)
    doc["layers"][1]["annotations"] = {"org.opencontainers.image.title": name}
    with pytest.raises(ArtifactInvalid):
        artifact.read_layout(doc)


@pytest.mark.parametrize("data, declared", [
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "image/svg+xml"),
    (b"<html><script>alert(1)</script></html>", "image/png"),
    (PNG, "image/jpeg"),  # content and declared type disagree
    (b"", "image/png"),
    (PNG + b"\x00" * artifact.MAX_ICON_BYTES, "image/png"),
])
def test_bad_icons_are_refused(data, declared):
    with pytest.raises(ArtifactInvalid):
        artifact.pack([("compose.yaml", COMPOSE)], icon=Icon("icon.png", data, declared))


@pytest.mark.parametrize("which, limit", [("compose", artifact.MAX_COMPOSE_BYTES),
                                          ("metadata", artifact.MAX_METADATA_BYTES),
                                          ("icon", artifact.MAX_ICON_BYTES)])
def test_descriptor_sizes_are_checked_before_reading(which, limit):
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)], METADATA,
                                   Icon("icon.png", PNG, "image/png")).manifest)
    index = {"compose": 0, "metadata": 1, "icon": 2}[which]
    doc["layers"][index]["size"] = limit + 1
    with pytest.raises(ArtifactInvalid, match="larger than"):
        artifact.read_layout(doc)


def test_pack_limits():
    with pytest.raises(ArtifactInvalid, match="larger than"):
        artifact.pack([("compose.yaml", "#" * (artifact.MAX_COMPOSE_BYTES + 1))])
    with pytest.raises(ArtifactInvalid, match="metadata is larger"):
        artifact.pack([("compose.yaml", COMPOSE)], {"x": "y" * artifact.MAX_METADATA_BYTES})
    with pytest.raises(ArtifactInvalid, match="at most"):
        artifact.pack([(f"c{i}.yaml", COMPOSE) for i in range(artifact.MAX_COMPOSE_FILES + 1)])
    with pytest.raises(ArtifactInvalid, match="together"):
        artifact.pack([(f"c{i}.yaml", "#" * artifact.MAX_COMPOSE_BYTES) for i in range(artifact.MAX_COMPOSE_FILES)])
    with pytest.raises(ArtifactInvalid, match="twice"):
        artifact.pack([("compose.yaml", COMPOSE), ("compose.yaml", COMPOSE)])
    with pytest.raises(ArtifactInvalid, match="at least one"):
        artifact.pack([])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(artifactType="application/vnd.example"), "artifactType"),
    (lambda d: d.update(layers=[]), "at least one layer"),
    (lambda d: d["layers"].pop(0), "no compose file"),
    (lambda d: d["layers"].append(dict(d["layers"][1])), "more than one metadata"),
    (lambda d: d["layers"].extend([dict(d["layers"][0])] * 20), "at most"),
    (lambda d: d["layers"][0].update(size=-1), "malformed descriptor"),
    (lambda d: d["layers"][0].update(annotations="x"), "malformed descriptor"),
])
def test_malformed_layouts(mutate, message):
    doc = json.loads(artifact.pack([("compose.yaml", COMPOSE)], METADATA).manifest)
    mutate(doc)
    with pytest.raises(ArtifactInvalid, match=message):
        artifact.read_layout(doc)


async def test_layer_content_must_match_its_descriptor():
    packed = artifact.pack([("compose.yaml", COMPOSE)], METADATA)
    compose_digest = packed.blobs[1].digest
    with pytest.raises(ArtifactInvalid, match="does not match"):
        await artifact.unpack(packed.manifest, fetcher(packed, {compose_digest: COMPOSE.encode() + b"#"}))


@pytest.mark.parametrize("metadata", [b"\xff\xfe", b"[1, 2]", b"NaN", b"[" * 100_000, b"{"])
async def test_bad_metadata_bytes(metadata):
    packed = artifact.pack([("compose.yaml", COMPOSE)], METADATA)
    doc = json.loads(packed.manifest)
    desc = {"mediaType": artifact.METADATA_MEDIA_TYPE, "digest": "sha256:" + hashlib.sha256(metadata).hexdigest(),
            "size": len(metadata)}
    doc["layers"][1] = desc
    blobs = {b.digest: b.data for b in packed.blobs} | {desc["digest"]: metadata}

    async def fetch(d):
        return blobs[d.digest]

    with pytest.raises(ArtifactInvalid, match="metadata"):
        await artifact.unpack(json.dumps(doc).encode(), fetch)


async def test_compose_must_be_utf8():
    packed = artifact.pack([("compose.yaml", b"\xff\xfeservices: {}")])
    with pytest.raises(ArtifactInvalid, match="UTF-8"):
        await artifact.unpack(packed.manifest, fetcher(packed))


def test_metadata_larger_than_the_limit_when_read_back():
    data = b"{" + b" " * artifact.MAX_METADATA_BYTES + b"}"
    with pytest.raises(ArtifactInvalid):
        artifact.read_layout({"artifactType": artifact.ARTIFACT_TYPE, "layers": [
            {"mediaType": artifact.COMPOSE_MEDIA_TYPE, "digest": "sha256:" + "0" * 64, "size": 1},
            {"mediaType": artifact.METADATA_MEDIA_TYPE, "digest": "sha256:" + "1" * 64, "size": len(data)}]})


@pytest.mark.parametrize("depth", [900, 50_000])
async def test_deeply_nested_metadata_and_manifests_are_refused_before_parsing(depth):
    """900 levels would parse under Python's recursion limit and then be walked by the app
    model; 50,000 would raise RecursionError inside json.loads. Neither gets that far."""
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    with pytest.raises(ArtifactInvalid, match="metadata is not valid"):
        artifact.parse_metadata(deep)
    with pytest.raises(ArtifactInvalid, match="manifest is not JSON"):
        await artifact.unpack(deep, fetcher(artifact.pack([("compose.yaml", COMPOSE)], METADATA)))
