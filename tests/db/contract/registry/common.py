"""Helpers of the registry contract tests."""

from __future__ import annotations

from tests.db.test_store import OCI_MANIFEST, digest, manifest

# Names that collations other than bytewise sort differently, in byte order.
BYTEWISE = ["a-b", "a.b", "a/b", "a0", "a_b", "ab"]
# Shuffled, so that the insertion order is not the answer.
SHUFFLED = ["ab", "a_b", "a/b", "a-b", "a0", "a.b"]


def names(records) -> list[str] | None:
    """The names of a page of records (None stays None)."""
    return None if records is None else [r.name for r in records]


__all__ = ["BYTEWISE", "OCI_MANIFEST", "SHUFFLED", "digest", "manifest", "names"]
