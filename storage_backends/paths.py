"""Path grammar shared by every driver."""

from __future__ import annotations

import re

from .errors import InvalidPathError

_COMPONENT = re.compile(r"^[A-Za-z0-9._-]+$")


def check_path(path: str, *, allow_root: bool = False) -> str:
    """Return `path` if it is a safe relative storage path, else raise InvalidPathError.

    Safe means: relative, '/'-separated, no empty, '.' or '..' components, and only
    [A-Za-z0-9._-] in each component. The root ("") is allowed only where asked for.
    """
    if path == "":
        if allow_root:
            return path
        raise InvalidPathError(path, "empty path")
    if not isinstance(path, str) or len(path) > 1024:
        raise InvalidPathError(str(path), "path too long")
    for part in path.split("/"):
        if part in ("", ".", "..") or not _COMPONENT.match(part):
            raise InvalidPathError(path)
    return path


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)
