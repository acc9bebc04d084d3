"""Which artifact type (policy.ARTIFACT_TYPES) a stored manifest is, for a retention rule's filter.

A run knows a manifest by its media type, its artifact type (the manifest's artifactType, or for an
OCI image manifest without one, its config's media type; hub/registry/manifests.py) and its
subject. The referrer kinds are recognised by the artifact types the signing and SBOM tools push
(cosign, notation, syft, trivy, in-toto/DSSE attestations); anything else with a subject is an
"artifact" referrer, which still follows its subject when no rule keeps it (engine.py). An app is
an app-store version (appstore.artifact.ARTIFACT_TYPE); an image is an image manifest or index
whose config is an image config (or that has none to say otherwise, as Docker's do).
"""

from __future__ import annotations

from appstore.artifact import ARTIFACT_TYPE as APP_ARTIFACT_TYPE

_IMAGE_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json",
                            "application/vnd.docker.container.image.v1+json"})
_MANIFESTS = frozenset({"application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.docker.distribution.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws"})
# Substrings of artifact types, checked in this order.
_REFERRER_KINDS = (
    ("signature", ("cosign.artifact.sig", "notary.signature", "sigstore.bundle", "cosign.simplesigning")),
    ("sbom", ("spdx", "cyclonedx", "syft", "sbom")),
    ("attestation", ("in-toto", "dsse", "attestation", "provenance", "vex", "vuln")),
)


def artifact_kind(media_type: str, artifact_type: str | None, subject: str | None) -> str:
    """image, app, signature, sbom, attestation or artifact."""
    kind = (artifact_type or "").lower()
    if kind == APP_ARTIFACT_TYPE:
        return "app"
    for name, needles in _REFERRER_KINDS:
        if any(n in kind for n in needles):
            return name
    if subject is None and media_type in _MANIFESTS and (not kind or kind in _IMAGE_CONFIGS):
        return "image"
    return "artifact"
