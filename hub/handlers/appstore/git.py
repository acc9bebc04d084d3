"""A read-only git endpoint per app version, for Portainer's compose-stack templates: git's smart
HTTP protocol v0 (what go-git speaks; the git CLI falls back to it when v2 is not advertised).

    GET  /api/v1/appstore/git/<repository>/<tag>.git/info/refs?service=git-upload-pack
    POST /api/v1/appstore/git/<repository>/<tag>.git/git-upload-pack

The repository is synthesized from the version (appstore.gitrepo). Who may clone is who may see
the app, as everywhere in the app store: anyone for a public app; for a private one, Basic
credentials of a user or robot who may pull it. An anonymous caller of an app it cannot see gets a
Basic challenge (401) whether the app is private or missing, so the git CLI asks for (or sends the
URL's) credentials and nothing tells an app's existence; a signed-in outsider gets the 404 of a
missing app. Pushing (git-receive-pack) is refused.
"""

from __future__ import annotations

from aiohttp import web

from appstore import gitrepo
from auth.policy import PrincipalKind

from ...keys import AUTH
from ...problems import AuthenticationRequired, Forbidden, MalformedRequest, NotFound, ValidationFailed
from .apps import appstore, principal

UPLOAD_PACK = "git-upload-pack"
# A clone's request is one want line and `done`; a fetch adds some haves. Anything bigger is not
# a client of a one-commit repository.
MAX_REQUEST_BYTES = 16 * 1024
_HEADERS = {"Cache-Control": "no-cache, max-age=0, must-revalidate", "X-Content-Type-Options": "nosniff"}


async def _repository(request: web.Request) -> gitrepo.Repository:
    who = await principal(request)
    try:
        body = await appstore(request).version(who, request.match_info["name"], request.match_info["version"])
    except NotFound:
        if AUTH in request.app and who.kind is PrincipalKind.ANONYMOUS:
            raise AuthenticationRequired("sign in to clone this app, or check its name") from None
        raise
    return repository_of(body)


def repository_of(version: dict) -> gitrepo.Repository:
    """The git repository of an app version, from its API body (AppStore.version)."""
    files = {f["name"]: f["content"] for f in version["compose_files"]}
    title = version["title"] or version["repository"]
    lines = [f"# {title}", "", f"Version {version['version']} of the DaoHub app `{version['repository']}`.", ""]
    if version["description"]:
        lines += [version["description"].strip(), ""]
    if version["parameters"]:
        lines += ["## Parameters", ""]
        for param in version["parameters"]:
            text = f"- `{param['name']}`"
            if param.get("label"):
                text += f": {param['label']}"
            if param.get("description"):
                text += f" ({param['description']})"
            if param.get("default") is not None and param.get("type") not in ("password", "secret"):
                text += f", default `{param['default']}`"
            lines.append(text)
        lines.append("")
    message = f"{title} {version['version']}\n\nDaoHub app {version['repository']}, tag {version['tag']}, " \
              f"manifest {version['digest']}"
    try:
        return gitrepo.build(files, readme="\n".join(lines), message=message)
    except ValueError as exc:
        # A plain `docker compose publish` artifact may name its file anything: no tree entry then.
        raise ValidationFailed(f"this app version cannot be served over git: {exc}") from None


async def info_refs(request: web.Request) -> web.StreamResponse:
    service = request.query.get("service")
    if service == "git-receive-pack":
        raise Forbidden("app store repositories are read-only")
    if service != UPLOAD_PACK:
        raise ValidationFailed.parameter("service", "must be git-upload-pack (the dumb protocol is not served)")
    repo = await _repository(request)
    return web.Response(body=repo.advertisement(), headers={
        **_HEADERS, "Content-Type": f"application/x-{UPLOAD_PACK}-advertisement"})


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise MalformedRequest(f"an upload-pack request is at most {MAX_REQUEST_BYTES} bytes", status=413)
    # aiohttp inflates a gzip body as it reads: the limit applies to the inflated bytes.
    data = await request.content.read(MAX_REQUEST_BYTES + 1)
    if len(data) > MAX_REQUEST_BYTES:
        raise MalformedRequest(f"an upload-pack request is at most {MAX_REQUEST_BYTES} bytes", status=413)
    return data


async def upload_pack(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    repo = await _repository(request)
    try:
        answer = gitrepo.upload_pack(repo, gitrepo.parse_upload_request(body))
    except gitrepo.ProtocolError as exc:
        raise MalformedRequest(f"bad upload-pack request: {exc}") from None
    return web.Response(body=answer, headers={**_HEADERS, "Content-Type": f"application/x-{UPLOAD_PACK}-result"})
