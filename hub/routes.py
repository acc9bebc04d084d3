"""The one route table of the OCI API: method, path pattern, handler, required action.

Repository names contain slashes, so /v2/ paths are matched here against anchored
patterns (longest suffix first) instead of by aiohttp's router.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .handlers import blobs, catalog, manifests, referrers, tags, uploads

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    action: str  # pull | push | delete | catalog

    @property
    def name(self) -> str:
        return self.handler.__name__


def _p(suffix: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<name>.+)/{suffix}$")


ROUTES: tuple[Route, ...] = (
    Route("POST", _p(r"blobs/uploads/?"), uploads.start_blob_upload, "push"),
    Route("GET", _p(r"blobs/uploads/(?P<uuid>[^/]+)"), uploads.get_blob_upload, "push"),
    Route("PATCH", _p(r"blobs/uploads/(?P<uuid>[^/]+)"), uploads.patch_blob_data, "push"),
    Route("PUT", _p(r"blobs/uploads/(?P<uuid>[^/]+)"), uploads.put_blob_upload_complete, "push"),
    Route("DELETE", _p(r"blobs/uploads/(?P<uuid>[^/]+)"), uploads.cancel_blob_upload, "push"),
    Route("GET", _p(r"blobs/(?P<digest>[^/]+)"), blobs.get_blob, "pull"),
    Route("HEAD", _p(r"blobs/(?P<digest>[^/]+)"), blobs.head_blob, "pull"),
    Route("DELETE", _p(r"blobs/(?P<digest>[^/]+)"), blobs.delete_blob, "delete"),
    Route("GET", _p(r"manifests/(?P<reference>[^/]+)"), manifests.get_manifest, "pull"),
    Route("HEAD", _p(r"manifests/(?P<reference>[^/]+)"), manifests.head_manifest, "pull"),
    Route("PUT", _p(r"manifests/(?P<reference>[^/]+)"), manifests.put_manifest, "push"),
    Route("DELETE", _p(r"manifests/(?P<reference>[^/]+)"), manifests.delete_manifest, "delete"),
    Route("GET", _p(r"tags/list"), tags.list_tags, "pull"),
    Route("GET", _p(r"referrers/(?P<subject>[^/]+)"), referrers.list_referrers, "pull"),
)

CATALOG = Route("GET", re.compile(r"^_catalog$"), catalog.list_catalog, "catalog")


def resolve(method: str, tail: str) -> tuple[Route | None, dict[str, str], bool]:
    """Match a /v2/<tail> request. Returns (route, params, path_matched_other_method)."""
    if method == "HEAD" and tail == "_catalog":
        return None, {}, True
    if tail == "_catalog":
        return (CATALOG, {}, False) if method == "GET" else (None, {}, True)
    other_method = False
    for route in ROUTES:
        m = route.pattern.match(tail)
        if m is None:
            continue
        if route.method == method:
            return route, m.groupdict(), False
        other_method = True
    return None, {}, other_method
