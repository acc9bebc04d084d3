"""OCI error codes as exceptions. Domain code raises these; one middleware renders them.

The code and the HTTP status are class data: one class per shape of answer, never set on an
instance (tests/unit/test_error_codes.py checks every module for that).
"""

from __future__ import annotations

from functools import cache
from typing import Any


class OciError(Exception):
    """An error with an OCI Distribution error code and HTTP status."""

    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"
    # Close the connection after answering (the request body was not read to its end).
    close_connection = False

    def __init__(self, message: str | None = None, detail: Any = None, *,
                 headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return {"errors": [err]}


class BlobUnknown(OciError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(OciError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(OciError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(OciError):
    code, status, default_message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(OciError):
    code, status, default_message = "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a blob unknown to registry"


class ManifestInvalid(OciError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(OciError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown"


class NameInvalid(OciError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(OciError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(OciError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class TagInvalid(ManifestInvalid):
    """A tag that does not match the tag grammar, in a manifest reference or a tag= parameter.

    The spec's list has no TAG_INVALID (distribution's code for schema 1 manifests, which the
    spec tells clients not to rely on); the reference names a manifest and is malformed, as
    DIGEST_INVALID answers a malformed digest reference, so MANIFEST_INVALID."""

    default_message = "invalid tag"


class Unauthorized(OciError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(OciError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(OciError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class InvalidParameters(Unsupported):
    """400: the spec's UNSUPPORTED is "a missing implementation or invalid set of parameters", and
    the parameters are the client's to fix (a bad ?n=, a token request's bad service, scope or
    grant, a request body that cannot be decoded)."""

    status, default_message = 400, "invalid set of parameters"


class EndpointUnknown(Unsupported):
    """404 for a /v2/ path that names no endpoint of the API."""

    status, default_message = 404, "no such endpoint"


class InsufficientScope(Denied):
    """401, as distribution answers a token without the scope needed: the client may come back
    with a wider token (the WWW-Authenticate challenge names the scope)."""

    status = 401


class TooManyRequests(OciError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class RangeNotSatisfiable(OciError):
    """416, the one range error: an upload chunk whose Content-Range is malformed, out of order or
    overlapping (with the upload's `Range` header), and a blob GET whose Range the blob does not
    have (with `Content-Range: bytes */<size>`).

    The spec's list has no code for a range: BLOB_UPLOAD_INVALID is an upload that "can no longer
    proceed", but after a 416 the upload goes on from its Range, and a GET is no upload at all;
    UNSUPPORTED is "an invalid set of parameters", which a range that does not fit is."""

    code, status, default_message = "UNSUPPORTED", 416, "requested range not satisfiable"


class PayloadTooLarge(OciError):
    code, status, default_message = "SIZE_INVALID", 413, "payload too large"


class Unavailable(OciError):
    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class BodyIdleTimeout(OciError):
    """The request body stopped arriving. What arrived is kept; the upload stays resumable."""

    code, status, default_message = "BLOB_UPLOAD_INVALID", 408, "request body stalled"
    close_connection = True


@cache
def with_status(base: type[OciError], status: int) -> type[OciError]:
    """`base` answering with another HTTP status, as a subclass (the status stays class data):
    for the statuses aiohttp's own HTTP exceptions carry, which have no class of their own here."""
    if status == base.status:
        return base
    return type(f"{base.__name__}{status}", (base,), {"status": status, "__module__": __name__,
                                                      "__qualname__": f"{base.__qualname__}{status}"})
