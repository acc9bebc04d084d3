"""Helpers of the cache contract tests."""

from __future__ import annotations

from hub.db import NewManifest

from ..registry.common import digest, manifest

NS = "cache.test"


async def image(registry, repository: str, sizes: dict[str, int], tag: str | None = None, **kw) -> NewManifest:
    """A manifest in `repository` referencing blobs of the given sizes (linked first), tagged `tag`."""
    for d, size in sizes.items():
        await registry.blobs.link(repository, d, size)
    m = manifest(list(sizes), **kw)
    assert await registry.manifests.put(repository, m, [tag] if tag else []) == []
    return m


__all__ = ["NS", "digest", "image", "manifest"]
