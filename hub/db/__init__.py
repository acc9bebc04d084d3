"""Metadata store: the interface and its implementations, chosen by URL."""

from .base import ManifestRecord, MetadataStore, NewManifest, ReferrerRecord, UploadRecord


def create_store(url: str, *, sqlite_synchronous: str = "FULL") -> MetadataStore:
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore, path_from_url

        return SqliteStore(path_from_url(url), synchronous=sqlite_synchronous)
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


__all__ = ["ManifestRecord", "MetadataStore", "NewManifest", "ReferrerRecord", "UploadRecord", "create_store"]
