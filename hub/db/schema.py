"""Versioned SQL migrations, one directory per dialect: NNNN_description.sql."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load(dialect: str) -> list[tuple[int, str, str]]:
    """[(version, name, sql)] in version order."""
    folder = resources.files("hub.db") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations for {dialect} are not numbered 1..N: {versions}")
    return found
