"""Artifacts that refer to an image (`subject`), pushed with the oras Python SDK, and the referrers API."""

from __future__ import annotations

import json
import os

import pytest

from .util import OCI_INDEX, OCI_MANIFEST, Api, describe, need_module, run, sha256_bytes

pytestmark = pytest.mark.e2e

SBOM_TYPE = "application/vnd.daohub.e2e.sbom"          # carried as config.mediaType (no artifactType)
SIGNATURE_TYPE = "application/vnd.daohub.e2e.signature"  # carried as artifactType, empty config
EMPTY_JSON = b"{}"
EMPTY_JSON_TYPE = "application/vnd.oci.empty.v1+json"


@pytest.fixture(scope="module")
def oras_client(registry, is_daohub):
    if not is_daohub:
        pytest.skip("CNCF distribution 2.8 has no referrers API")
    oras_client_module = need_module("oras.client")
    return oras_client_module.OrasClient(hostname=registry.host, insecure=True)


def test_artifacts_with_subject_and_referrers_api(registry, containers_env, image, oras_client, workdir,
                                                  monkeypatch):
    import oras.oci

    api = Api(registry.url)
    repo = "e2e/referrers"
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.storage_ref,
         f"docker://{registry.host}/{repo}:v1"], env=containers_env)
    subject_manifest = api.manifest(repo, "v1")
    subject_digest = sha256_bytes(subject_manifest.content)
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(subject_manifest.content))

    # 1. An SBOM with the SDK's push(): files uploaded in chunks, a typed config, a subject.
    monkeypatch.chdir(workdir)
    sbom = workdir / "sbom.spdx.json"
    sbom.write_bytes(json.dumps({"spdxVersion": "SPDX-2.3", "name": "daohub-e2e",
                                 "noise": os.urandom(6000).hex()}).encode())
    config = workdir / "sbom-config.json"
    config.write_bytes(b'{"generator": "daohub-e2e"}')
    response = oras_client.push(
        target=f"{registry.host}/{repo}:sbom",
        files=[f"{sbom.name}:application/spdx+json"],
        manifest_config=f"{config.name}:{SBOM_TYPE}",
        manifest_annotations={"org.opencontainers.image.description": "e2e sbom"},
        subject=subject,
        do_chunked=True,
        chunk_size=4096,
        quiet=True,
    )
    assert response.status_code == 201, describe(response)
    assert response.headers.get("OCI-Subject") == subject_digest, describe(response)
    sbom_digest = response.headers["Docker-Content-Digest"]

    # 2. A signature with an explicit artifactType and the empty config, through the SDK's lower-level calls.
    container = oras_client.get_container(f"{registry.host}/{repo}:signature")
    signature = workdir / "signature.bin"
    signature.write_bytes(os.urandom(512))
    empty = workdir / "empty.json"
    empty.write_bytes(EMPTY_JSON)
    layer = {"mediaType": "application/vnd.daohub.e2e.signature.v1", "digest": sha256_bytes(signature.read_bytes()),
             "size": signature.stat().st_size}
    config_desc = {"mediaType": EMPTY_JSON_TYPE, "digest": sha256_bytes(EMPTY_JSON), "size": 2}
    for path, desc in ((signature, layer), (empty, config_desc)):
        r = oras_client.upload_blob(str(path), container, desc)
        assert r.status_code == 201, describe(r)
    signature_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": config_desc,
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_manifest.content)},
        "annotations": {"org.example.signer": "e2e"},
    }
    response = oras_client.upload_manifest(signature_manifest, container)
    assert response.status_code == 201, describe(response)
    assert response.headers.get("OCI-Subject") == subject_digest, describe(response)
    signature_digest = response.headers["Docker-Content-Digest"]

    # 3. The referrers API lists both, typed and annotated.
    r = api.get(f"/v2/{repo}/referrers/{subject_digest}")
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX, describe(r)
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {sbom_digest, signature_digest}, index
    assert by_digest[sbom_digest]["artifactType"] == SBOM_TYPE
    assert by_digest[sbom_digest]["mediaType"] == OCI_MANIFEST
    assert by_digest[sbom_digest]["annotations"]["org.opencontainers.image.description"] == "e2e sbom"
    assert by_digest[signature_digest]["artifactType"] == SIGNATURE_TYPE
    assert by_digest[signature_digest]["annotations"] == {"org.example.signer": "e2e"}
    for digest, desc in by_digest.items():
        manifest = api.manifest(repo, digest)
        assert len(manifest.content) == desc["size"]
        assert manifest.json()["subject"]["digest"] == subject_digest

    # 4. Filtering by artifactType, announced in OCI-Filters-Applied.
    r = api.get(f"/v2/{repo}/referrers/{subject_digest}", params={"artifactType": SIGNATURE_TYPE})
    assert r.status_code == 200, describe(r)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType", describe(r)
    assert [d["digest"] for d in r.json()["manifests"]] == [signature_digest], describe(r)
    r = api.get(f"/v2/{repo}/referrers/{subject_digest}", params={"artifactType": "application/x-none"})
    assert r.status_code == 200 and r.json()["manifests"] == [], describe(r)

    # 5. A digest nothing refers to: an empty index, not an error.
    r = api.get(f"/v2/{repo}/referrers/{sha256_bytes(b'nothing refers to this')}")
    assert r.status_code == 200, describe(r)
    assert r.json()["manifests"] == [], describe(r)

    # 6. The artifacts pull back byte for byte.
    out = workdir / "pulled"
    files = oras_client.pull(target=f"{registry.host}/{repo}:sbom", outdir=str(out))
    assert [os.path.basename(f) for f in files] == [sbom.name]
    assert (out / sbom.name).read_bytes() == sbom.read_bytes()
    api.check_image(repo, sbom_digest)
    api.check_image(repo, signature_digest)
