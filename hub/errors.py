"""OCI error codes as exceptions. Domain code raises these; one middleware renders them."""

from __future__ import annotations

from typing import Any


class OciError(Exception):
    """An error with an OCI Distribution error code and HTTP status."""

    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"
    # Close the connection after answering (the request body was not read to its end).
    close_connection = False

    def __init__(self, message: str | None = None, detail: Any = None, *, headers: dict[str, str] | None = None,
                 status: int | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail
        self.headers = headers or {}
        if status is not None:
            self.status = status

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


class TooManyRequests(OciError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class RangeNotSatisfiable(OciError):
    """416 for an out-of-order or overlapping chunk; carries the Range already received."""

    code, status, default_message = "BLOB_UPLOAD_INVALID", 416, "requested range not satisfiable"


class PayloadTooLarge(OciError):
    code, status, default_message = "SIZE_INVALID", 413, "payload too large"


class Unavailable(OciError):
    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class BodyIdleTimeout(OciError):
    """The request body stopped arriving. What arrived is kept; the upload stays resumable."""

    code, status, default_message = "BLOB_UPLOAD_INVALID", 408, "request body stalled"
    close_connection = True
