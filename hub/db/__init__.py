"""Metadata store: the interface and its implementations, chosen by URL."""

from .base import ManifestRecord, MetadataStore, NewManifest, ReferrerRecord, UploadRecord


def create_store(url: str, *, sqlite_synchronous: str = "FULL", pool_min_size: int = 2,
                 pool_max_size: int = 20) -> MetadataStore:
    """The store for `url` (not opened yet); the pool sizes apply to PostgreSQL, per process."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore, path_from_url

        return SqliteStore(path_from_url(url), synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, pool_min_size=pool_min_size, pool_max_size=pool_max_size)
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


__all__ = ["ManifestRecord", "MetadataStore", "NewManifest", "ReferrerRecord", "UploadRecord", "create_store"]
