"""Media types the registry understands."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES

# Content types that say nothing about the manifest: fall back to the body's mediaType.
GENERIC_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


def is_non_distributable(media_type: str) -> bool:
    """Layers that registries must not require (Windows foreign layers and the OCI equivalent)."""
    return "nondistributable" in media_type or "foreign" in media_type
