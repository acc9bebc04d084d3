"""RFC 9457 problem details: the error format of the admin API (/api/).

Domain code and admin handlers raise a Problem; the one error middleware renders it as
``application/problem+json``. Field-level validation problems list each bad field in
``errors``: ``{"detail": ..., "pointer": "#/field"}`` for the JSON body (a JSON Pointer
fragment, as in RFC 9457's example) or ``{"detail": ..., "parameter": "limit"}`` for a
query parameter.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:daohub:problem:"


class Problem(Exception):
    status = 500
    slug = "internal-error"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        if status is not None:
            self.status = status

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug

    @property
    def title(self) -> str:
        return _title(self.status)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                "detail": self.detail}
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class MalformedRequest(Problem):
    status, slug = 400, "malformed-request"


class ValidationFailed(Problem):
    status, slug = 422, "validation-error"

    @classmethod
    def field(cls, field: str, detail: str) -> ValidationFailed:
        """One bad field of the JSON body (`field` is a top-level member name or a JSON Pointer)."""
        pointer = field if field.startswith("/") else "/" + field
        return cls(f"{field.lstrip('/')}: {detail}", errors=[{"detail": detail, "pointer": "#" + pointer}])

    @classmethod
    def parameter(cls, name: str, detail: str) -> ValidationFailed:
        return cls(f"{name}: {detail}", errors=[{"detail": detail, "parameter": name}])


class AuthenticationRequired(Problem):
    status, slug = 401, "authentication-required"

    def __init__(self, detail: str = "authentication required", **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Basic realm="daohub"')


class Forbidden(Problem):
    status, slug = 403, "forbidden"


class NotFound(Problem):
    status, slug = 404, "not-found"


class Conflict(Problem):
    status, slug = 409, "conflict"


class TooManyRequests(Problem):
    status, slug = 429, "too-many-requests"


def from_status(status: int, detail: str, headers: dict[str, str] | None = None) -> Problem:
    """A problem for an error that was not raised as one (routing errors, OCI errors, crashes)."""
    problem = Problem(detail, headers=headers, status=status)
    problem.slug = {400: "malformed-request", 401: "authentication-required", 403: "forbidden",
                    404: "not-found", 405: "method-not-allowed", 409: "conflict", 413: "payload-too-large",
                    429: "too-many-requests"}.get(status, "internal-error" if status >= 500 else "error")
    return problem
