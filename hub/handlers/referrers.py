"""GET /v2/<name>/referrers/<digest>[?artifactType=]: always an OCI index, maybe empty."""

from __future__ import annotations

import json

from aiohttp import web

from ..keys import REGISTRY
from ..registry import mediatypes as mt


async def list_referrers(request: web.Request, name: str, subject: str) -> web.StreamResponse:
    artifact_type = request.query.get("artifactType") or None
    records = await request.app[REGISTRY].list_referrers(name, subject, artifact_type)
    manifests = []
    for r in records:
        descriptor = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
        if r.artifact_type:
            descriptor["artifactType"] = r.artifact_type
        if r.annotations_json:
            descriptor["annotations"] = json.loads(r.annotations_json)
        manifests.append(descriptor)
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    response = web.Response(body=json.dumps(body).encode(), content_type=mt.OCI_INDEX)
    if artifact_type:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response
