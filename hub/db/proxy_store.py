"""The pull-through cache's half of the metadata store: upstreams created through the admin
API, when cached images were last pulled, and the cache's size and eviction.

A cache namespace is every repository `<upstream>/...`; its size is the sum of the sizes of
the distinct blobs linked into those repositories (a blob shared by several cached images
counts once). The unit of eviction is an image: a manifest that no other manifest of its
repository references (a single-platform manifest, or an index with its platform
manifests), with everything only it references.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

# Columns of proxy_upstreams an update may change (name is the key; created_at is fixed).
UPSTREAM_FIELDS = frozenset({"url", "aliases", "username", "password", "manifest_revalidate_seconds", "tenants",
                             "anonymous_pull", "max_size_bytes", "ttl_days"})


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamRecord:
    name: str
    url: str
    aliases: tuple[str, ...]
    username: str
    password: str = dataclasses.field(repr=False)
    manifest_revalidate_seconds: int
    tenants: tuple[str, ...]
    anonymous_pull: bool
    max_size_bytes: int | None
    ttl_days: float | None
    created_at: float
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class CachedImage:
    """An eviction candidate: `digest` in `repository`, and when it (or one of its platform
    manifests) was last pulled; its creation time if it never was."""

    repository: str
    digest: str
    last_pulled: float
    size: int  # of the blobs it references that are cached (shared ones count in every image)


@dataclasses.dataclass(frozen=True, slots=True)
class EvictedImage:
    manifests: tuple[str, ...]  # digests removed from the repository (the image and its children)
    unlinked: tuple[str, ...]  # blob digests no longer linked into the repository
    freed_bytes: int  # how much smaller the namespace is now (blobs no repository of it links)


class ProxyStore:
    """Not abstract: a store without these still serves everything else."""

    def _unsupported(self):
        return NotImplementedError(f"{type(self).__name__} does not support managed upstreams yet")

    # Upstreams -------------------------------------------------------------------------------------
    async def list_upstreams(self) -> list[UpstreamRecord]:
        raise self._unsupported()

    async def get_upstream(self, name: str) -> UpstreamRecord | None:
        raise self._unsupported()

    async def create_upstream(self, record: UpstreamRecord) -> bool:
        """False (and nothing written) if an upstream of that name exists."""
        raise self._unsupported()

    async def update_upstream(self, name: str, changes: Mapping[str, object]) -> UpstreamRecord | None:
        """Change UPSTREAM_FIELDS (lists as tuples); None if there is no such upstream."""
        raise self._unsupported()

    async def delete_upstream(self, name: str) -> bool:
        raise self._unsupported()

    async def upstreams_version(self) -> int:
        """A counter every upstream change bumps in its own transaction."""
        raise self._unsupported()

    # Cache bounds ----------------------------------------------------------------------------------
    async def record_pulls(self, pulls: Iterable[tuple[str, str, float]]) -> None:
        """(repository, manifest digest, epoch seconds): keep the latest time per manifest (a
        manifest that is gone is skipped)."""
        raise self._unsupported()

    async def cache_size(self, namespace: str) -> int:
        raise self._unsupported()

    async def cache_images(self, namespace: str) -> list[CachedImage]:
        """Images of the repositories `<namespace>/...`, least recently pulled first."""
        raise self._unsupported()

    async def evict_image(self, repository: str, digest: str, namespace: str) -> EvictedImage:
        """In one transaction: delete the image, its tags, the platform manifests no other
        manifest references, and the repository's blob links no remaining manifest references;
        drop the repository if nothing is left in it. Idempotent: a second call finds nothing."""
        raise self._unsupported()

    async def delete_unlinked_blob(self, digest: str) -> bool:
        """Delete the blob's row if no repository links it; True if this call deleted it."""
        raise self._unsupported()


def namespace_range(namespace: str) -> tuple[str, str]:
    # Repository names under "<ns>/" sort between "<ns>/" and "<ns>0" ('0' follows '/').
    return namespace + "/", namespace + "0"
