"""Grammar of repository names, tags and digests (OCI Distribution v1.1)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import DigestInvalid, NameInvalid, TagInvalid

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
# One path component (a tenant, user or robot name): the pattern as a string, for JSON Schema too.
COMPONENT_PATTERN = rf"^{_NAME_COMPONENT}$"
COMPONENT_RE = re.compile(COMPONENT_PATTERN)
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255

# Encoded-part grammar for the algorithms we accept. The spec allows registering
# others; a registry may refuse what it cannot verify, and so do we.
_ALGORITHMS = {
    "sha256": (re.compile(r"^[a-f0-9]{64}$"), hashlib.sha256),
    "sha512": (re.compile(r"^[a-f0-9]{128}$"), hashlib.sha512),
}
_DIGEST_SHAPE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name: {name[:300]!r}", detail={"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    return bool(TAG_RE.fullmatch(reference))


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid(f"invalid tag: {tag[:200]!r}", detail={"tag": tag[:200]})
    return tag


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self):
        return _ALGORITHMS[self.algorithm][1]()

    @property
    def blob_path(self) -> str:
        """Content-addressed storage path: blobs/<alg>/<2 hex>/<hex>."""
        return f"blobs/{self.algorithm}/{self.hex[:2]}/{self.hex}"


def looks_like_digest(reference: str) -> bool:
    return ":" in reference


def parse_digest(value: str) -> Digest:
    """Parse and validate "alg:hex"; raise DigestInvalid for anything else."""
    if not value or len(value) > 256 or not _DIGEST_SHAPE.fullmatch(value):
        raise DigestInvalid(f"invalid digest: {value[:300]!r}", detail={"digest": value[:300]})
    algorithm, encoded = value.split(":", 1)
    spec = _ALGORITHMS.get(algorithm)
    if spec is None:
        raise DigestInvalid(f"unsupported digest algorithm: {algorithm!r}", detail={"digest": value})
    if not spec[0].fullmatch(encoded):
        raise DigestInvalid(f"invalid {algorithm} digest: {value!r}", detail={"digest": value})
    return Digest(algorithm, encoded)


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, _ALGORITHMS[algorithm][1](data).hexdigest())
