"""Handlers of the web catalog under /apps/: HTML in and out; every rule is appstore.service's.

Each page resolves the browser's session (hub.web.session) to a principal the way the JSON API
resolves credentials, calls the same AppStore use case, and renders a template. A Problem raised
by the service becomes an HTML error page with the same status. Every POST must carry the
session's CSRF token and come from this origin (Origin, else Referer).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup

from appstore import artifact, interpolate, yamlsafe
from appstore.catalog import default_key
from appstore.errors import AppStoreError
from appstore.markdown import render_markdown
from appstore.service import AppStore, Upload
from auth.policy import Principal
from auth.providers import ProviderUnavailable
from auth.service import AuthenticationFailed, LoginThrottled, SignInRefused

from .. import safejson
from ..clientaddr import client_address
from ..handlers.appstore.apps import appstore, icon_response
from ..keys import AUTH, CONFIG, ROUTE
from ..problems import Forbidden, MalformedRequest, NotFound, Problem, TooManyRequests, ValidationFailed
from . import forms
from . import session as sessions
from .address import address

HERE = Path(__file__).resolve().parent
STATIC = {"app.css": "text/css", "app.js": "text/javascript"}
PAGE_SIZE = 24
_OPEN = Principal.user("open-registry", is_platform_admin=True)
# Scripts and styles only from files served here: an injected <script> or on* attribute never runs.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}

ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters["q"] = lambda value: quote(str(value), safe="/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SESSION = web.RequestKey("web_session", sessions.Session)
_NEW_SESSION = web.RequestKey("web_session_new", bool)
_PRINCIPAL = web.RequestKey("web_principal", Principal)
# Session keys of an open registry (auth off), which has no signing keys to derive them from.
LOCAL_KEYS = web.AppKey("web_local_session_keys", sessions.Keys)


def _now() -> datetime:
    return datetime.now(UTC)


def markdown(text: str) -> Markup:
    # The only markup taken as is: appstore.markdown allows no raw HTML and only safe links.
    return Markup(render_markdown(text or "", heading_offset=1))


# Sessions ------------------------------------------------------------------------------------
def session_keys(request: web.Request) -> sessions.Keys:
    auth = request.app.get(AUTH)
    if auth is None:
        return request.app[LOCAL_KEYS]
    return sessions.Keys.from_ring(auth.verifier_keyring())


async def _resolve(request: web.Request) -> tuple[Principal, sessions.Session]:
    keys = session_keys(request)
    session = sessions.decode(keys, request.cookies.get(sessions.COOKIE))
    auth = request.app.get(AUTH)
    principal = Principal.anonymous() if auth is not None else _OPEN
    if session is not None and session.signed_in and auth is not None:
        try:
            if await auth.web_session_live(session.sid_hash, session.subject):
                principal = await auth.principal_for_subject(session.subject)
        except ProviderUnavailable:
            # The directory that vouches for this account is down: a visitor until it is back, and
            # the session is not ended.
            pass
        else:
            if not principal.is_authenticated(_now()):
                # Signed out, password changed, disabled or deleted since signing in: the cookie
                # no longer stands for anyone.
                principal, session = Principal.anonymous(), None
    if session is None:
        session = sessions.new_session(keys)
        request[_NEW_SESSION] = True
    request[_SESSION] = session
    request[_PRINCIPAL] = principal
    return principal, session


def _set_cookie(request: web.Request, response: web.StreamResponse, session: sessions.Session) -> None:
    response.set_cookie(sessions.COOKIE, sessions.encode(session_keys(request), session), path="/",
                        max_age=max(0, session.expires - int(_now().timestamp())), httponly=True,
                        samesite="Lax", secure=_https(request))


def _https(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the request itself is plain http: public_url tells.
    return request.secure or request.app[CONFIG].server.public_url.lower().startswith("https://")


def _same_origin(request: web.Request) -> bool:
    allowed = {f"{request.scheme}://{request.host}".lower()}
    public_url = request.app[CONFIG].server.public_url
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.lower() in allowed


async def _form(request: web.Request):
    """The POSTed form. aiohttp raises ValueError for a body it cannot decode (bytes that are
    not UTF-8, broken multipart): the sender's fault, a 400 page."""
    try:
        return await request.post()
    except ValueError as exc:
        raise MalformedRequest(f"the form could not be read: {str(exc)[:200]}") from None


async def _check_post(request: web.Request, form) -> None:
    if not _same_origin(request):
        raise Forbidden("this form was not sent from this site's pages (Origin/Referer check)")
    token = form.get("csrf")
    if not isinstance(token, str) or request.get(_NEW_SESSION) or not sessions.csrf_ok(
            session_keys(request), request[_SESSION], token):
        raise Forbidden("the form's security token is missing or stale: reload the page and send it again")


# Responses -----------------------------------------------------------------------------------
def page(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    session = request[_SESSION]
    principal = request[_PRINCIPAL]
    html = ENV.get_template(template).render(
        csrf=sessions.csrf_token(session_keys(request), session), user=session.subject if session.signed_in else "",
        auth_enabled=AUTH in request.app, path=request.path_qs, principal=principal, **context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    return finish(request, response)


def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    if request.get(_NEW_SESSION):
        _set_cookie(request, response, request[_SESSION])
    return response


def see_other(request: web.Request, location: str) -> web.StreamResponse:
    return finish(request, web.Response(status=303, headers={"Location": location}))


def wrap(handler: Handler) -> Handler:
    """Resolve the session, and answer a Problem as an HTML page with the Problem's status."""
    async def run(request: web.Request) -> web.StreamResponse:
        request[ROUTE] = f"web.{handler.__name__}"
        try:
            await _resolve(request)
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as exc:
            if _SESSION not in request:
                raise
            problem = Problem(f"the form is larger than this server accepts ({exc.text})", status=413)
            return page(request, "error.html", 413, problem=problem, title="Too large")
        except Problem as problem:
            if _SESSION not in request:
                raise
            response = page(request, "error.html", problem.status, problem=problem,
                            title={401: "Sign in required", 403: "Not allowed", 404: "Not found",
                                   429: "Too many attempts"}.get(problem.status, "Something is wrong"))
            for key, value in problem.headers.items():
                if key.lower() == "retry-after":
                    response.headers[key] = value
            return response
    run.__name__ = handler.__name__
    return run


def _service(request: web.Request) -> AppStore:
    return appstore(request)


# Pages ---------------------------------------------------------------------------------------
async def browse(request: web.Request) -> web.StreamResponse:
    principal = request[_PRINCIPAL]
    q = request.query.get("q", "")[:200]
    category = request.query.get("category", "")[:100]
    after = request.query.get("after") or None
    service = _service(request)
    items, last = await service.list_apps(principal, query=q, category=category, limit=PAGE_SIZE, after=after)
    categories = await service.categories(principal)
    next_url = None
    if last is not None:
        next_url = "/apps/?" + urlencode({k: v for k, v in (("q", q), ("category", category), ("after", last)) if v})
    return page(request, "browse.html", apps=items, categories=categories, q=q, category=category,
                next_url=next_url, first_url="/apps/?" + urlencode({k: v for k, v in (("q", q),
                                                                                    ("category", category)) if v}),
                paged=after is not None, title="Apps", done=request.query.get("done", "")[:200])


async def _app_context(request: web.Request, name: str, tag: str | None) -> dict:
    service = _service(request)
    app = await service.app(request[_PRINCIPAL], name)
    tag = tag or app["latest_tag"]
    version = await service.version(request[_PRINCIPAL], name, tag)
    scheme, host = address(request)
    changelog = [{**entry, "notes_html": markdown(entry["release_notes"])}
                 for entry in await service.changelog(request[_PRINCIPAL], name)]
    return {"app": app, "version": version, "tag": tag, "description": markdown(version["description"]),
            "release_notes": markdown(version.get("release_notes", "")), "title": version["title"],
            "changelog": changelog, "may": await _may(request, name),
            "icon_url": _icon_url(name, tag) if version.get("icon") else None, "name": name,
            "compose": {"host": host, "reference": f"{host}/{name}:{tag}", "https": scheme == "https",
                        "environment": version["compose_environment"]}}


async def _may(request: web.Request, name: str) -> dict[str, bool]:
    abilities = await _service(request).abilities(request[_PRINCIPAL], name)
    return {**abilities, "manage": any(abilities.values())}


def _icon_url(name: str, tag: str | None = None) -> str:
    return "/apps/icon/" + quote(name, safe="/") + ("?" + urlencode({"version": tag}) if tag else "")


async def show_app(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    context = await _app_context(request, name, request.query.get("version"))
    return page(request, "app.html", groups=forms.groups(context["version"]["parameters"]), rendered=None,
                errors=[], **context)


async def render_app(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    form = await _form(request)
    await _check_post(request, form)
    tag = form.get("version")
    if not isinstance(tag, str) or not tag:
        raise NotFound("no such app version")
    context = await _app_context(request, name, tag)
    parameters = context["version"]["parameters"]
    submitted = forms.submitted_values(parameters, form)
    try:
        rendered = await _service(request).render(request[_PRINCIPAL], name, tag, submitted)
    except ValidationFailed as problem:
        field_errors, general = forms.split_errors(problem.errors)
        if not field_errors and not general:
            general = [problem.detail]
        return page(request, "app.html", 422, groups=forms.groups(parameters, submitted, field_errors),
                    rendered=None, errors=general, **context)
    if form.get("action") == "download":
        response = web.Response(text=rendered["compose"], content_type="application/yaml", charset="utf-8",
                                headers={"Content-Disposition": 'attachment; filename="compose.yaml"'})
        return finish(request, response)
    return page(request, "app.html", groups=forms.groups(parameters, submitted), rendered=rendered, errors=[],
                **context)


async def icon(request: web.Request) -> web.StreamResponse:
    data, media_type, digest = await _service(request).icon(request[_PRINCIPAL], request.match_info["name"],
                                                            request.query.get("version") or None)
    response = icon_response(request, data, media_type, digest, shared=False)
    if request.get(_NEW_SESSION):
        _set_cookie(request, response, request[_SESSION])
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in STATIC:  # a fixed list: nothing else under the package is reachable
        raise NotFound("no such file")
    response = web.Response(body=(HERE / "static" / name).read_bytes(), content_type=STATIC[name],
                            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
    return response


# Signing in ----------------------------------------------------------------------------------
def _next(value: object) -> str:
    """Where to go after signing in: a path of this catalog only (no open redirect).

    Only printable ASCII is kept, as a URL path and query come encoded: a CR or LF would split
    the Location header (aiohttp then sends no reply at all), and `//` or a backslash after the
    prefix would let a browser read the rest as another host.
    """
    if isinstance(value, str) and value.startswith(("/apps/", "/console/")) and len(value) < 1000 \
            and all("!" <= c <= "~" for c in value) and "\\" not in value \
            and "//" not in value.partition("?")[0]:
        return value
    return "/apps/"


def _login_page(request: web.Request, status: int = 200, *, next: str, error: str = "", username: str = ""):
    providers = [(label, f"/apps/login/{quote(name, safe='')}?" + urlencode({"next": next}))
                 for name, label in request.app[AUTH].browser_providers()]
    return page(request, "login.html", status, next=next, error=error, username=username, providers=providers,
                title="Sign in")


async def login_form(request: web.Request) -> web.StreamResponse:
    if AUTH not in request.app:
        return see_other(request, "/apps/")
    await request.app[AUTH].refresh_providers()
    return _login_page(request, next=_next(request.query.get("next")))


def _callback_url(request: web.Request, provider: str) -> str:
    """Where the provider sends the browser back: this provider's callback on the public address
    (server.public_url, else the request's Host; a made-up Host gets a URL the provider refuses)."""
    scheme, host = address(request)
    return f"{scheme}://{host}/apps/login/{quote(provider, safe='')}/callback"


async def start_provider_sign_in(request: web.Request) -> web.StreamResponse:
    """"Sign in with <provider>": off to the provider's authorization endpoint, with a state, a nonce
    and a PKCE challenge kept server-side and bound to this browser's session cookie."""
    if AUTH not in request.app:
        raise NotFound("this registry has no accounts")
    provider = request.match_info["provider"]
    target = _next(request.query.get("next"))
    try:
        url = await request.app[AUTH].start_browser_sign_in(provider, _callback_url(request, provider),
                                                            request[_SESSION].nonce, target)
    except SignInRefused as exc:
        raise NotFound(str(exc)) from None
    except ProviderUnavailable as exc:
        return _login_page(request, 503, next=target, error=f"Sign-in is not possible right now: {exc}. "
                                                            "Try again later.")
    return finish(request, web.Response(status=302, headers={"Location": url}))


async def finish_provider_sign_in(request: web.Request) -> web.StreamResponse:
    """The provider's redirect back: the state must be one this browser started; the code is
    redeemed once and the ID token checked, then the browser is signed in."""
    if AUTH not in request.app:
        raise NotFound("this registry has no accounts")
    provider, query = request.match_info["provider"], request.query
    if query.get("error"):
        error = str(query.get("error"))[:100]
        return _login_page(request, 401, next="/apps/", error=f"The identity provider did not sign you in ({error}).")
    try:
        principal, target = await request.app[AUTH].finish_browser_sign_in(
            provider, str(query.get("state", "")), str(query.get("code", "")), _callback_url(request, provider),
            request[_SESSION].nonce)
    except SignInRefused as exc:
        return _login_page(request, 401, next="/apps/", error=f"Sign-in refused: {exc}.")
    except ProviderUnavailable as exc:
        return _login_page(request, 503, next="/apps/", error=f"Sign-in is not possible right now: {exc}. "
                                                              "Try again later.")
    return await _signed_in(request, principal, _next(target))


async def _signed_in(request: web.Request, principal: Principal, target: str) -> web.StreamResponse:
    # A fresh nonce on signing in: a token seen before no longer works (no session fixation).
    session = sessions.new_session(session_keys(request), principal.name)
    await request.app[AUTH].start_web_session(session.sid_hash, principal.name, session.expires)
    request[_SESSION] = session
    request[_NEW_SESSION] = True
    return see_other(request, target)


async def login(request: web.Request) -> web.StreamResponse:
    if AUTH not in request.app:
        raise NotFound("this registry has no accounts")
    form = await _form(request)
    await _check_post(request, form)
    username, password = form.get("username"), form.get("password")
    target = _next(form.get("next"))
    if not isinstance(username, str) or not isinstance(password, str) or not username or len(username) > 256:
        return _login_page(request, 400, next=target, error="Enter your username and password.")
    try:
        principal = await request.app[AUTH].authenticate(username, password, client_address(request))
    except LoginThrottled as exc:
        raise TooManyRequests(f"too many failed sign-ins: try again in {int(exc.retry_after) + 1} seconds",
                              headers={"Retry-After": str(int(exc.retry_after) + 1)}) from None
    except AuthenticationFailed:
        return _login_page(request, 401, next=target, error="Wrong username or password.", username=username)
    except ProviderUnavailable as exc:
        return _login_page(request, 503, next=target, username=username,
                           error=f"Sign-in is not possible right now: {exc}. Try again later.")
    if not principal.is_authenticated(_now()) or principal.robot is not None:
        return _login_page(request, 401, next=target, error="This account cannot sign in here.", username=username)
    return await _signed_in(request, principal, target)


async def logout(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _check_post(request, form)
    if request[_SESSION].signed_in and AUTH in request.app:
        await request.app[AUTH].end_web_session(request[_SESSION].sid_hash)
    request[_SESSION] = sessions.new_session(session_keys(request))
    request[_NEW_SESSION] = True
    return see_other(request, "/apps/")


# Managing ------------------------------------------------------------------------------------
def _require_sign_in(request: web.Request) -> web.StreamResponse | None:
    if AUTH in request.app and not request[_SESSION].signed_in:
        return see_other(request, "/apps/login?" + urlencode({"next": request.path_qs}))
    return None


async def manage(request: web.Request) -> web.StreamResponse:
    redirect = _require_sign_in(request)
    if redirect:
        return redirect
    name = request.match_info["name"]
    app = await _service(request).app(request[_PRINCIPAL], name)
    may = await _may(request, name)
    if not may["manage"]:
        raise Forbidden("you may see this app but not change it: publishing needs push, deprecating a "
                        "maintainer or admin of the tenant, deleting the delete permission")
    return page(request, "manage.html", app=app, name=name, title=f"Manage {app['title']}", may=may,
                done=request.query.get("done", "")[:200])


async def manage_action(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    form = await _form(request)
    await _check_post(request, form)
    service = _service(request)
    action, tag = form.get("action"), form.get("tag")
    if not isinstance(tag, str) or not tag:
        raise NotFound("no such app version")
    if action in ("deprecate", "undeprecate"):
        await service.set_deprecated(request[_PRINCIPAL], name, tag, action == "deprecate")
        done = f"{tag}: {action}d"
    elif action == "delete":
        if form.get("confirm") != tag:
            raise ValidationFailed.field("confirm", "tick the box to confirm deleting the version")
        await service.delete_version(request[_PRINCIPAL], name, tag)
        done = f"{tag}: deleted"
        try:
            await service.app(request[_PRINCIPAL], name)
        except NotFound:  # its last version: the app is gone
            return see_other(request, "/apps/?" + urlencode({"done": done}))
    else:
        raise ValidationFailed.field("action", "must be deprecate, undeprecate or delete")
    return see_other(request, "/apps/manage/" + quote(name, safe="/") + "?" + urlencode({"done": done}))


async def publish_form(request: web.Request) -> web.StreamResponse:
    redirect = _require_sign_in(request)
    if redirect:
        return redirect
    repository = request.query.get("repository", "")[:300]
    metadata, compose, icon_name = "", "", None
    fields = forms.PublishFields()
    latest = ""
    if repository:
        # Start from the latest version: publishing the next one is then a matter of its number.
        try:
            doc, files, icon_name = await _service(request).draft(request[_PRINCIPAL], repository)
        except NotFound:
            fields.key = repository.rsplit("/", 1)[-1]
        else:
            metadata = json.dumps(doc, indent=2, ensure_ascii=False)
            compose = files[0][1] if len(files) == 1 else ""
            fields = forms.fields_from_metadata(doc)
            latest = str(doc.get("version", {}).get("version", ""))
    return _publish_page(request, 200, repository=repository, metadata=metadata, compose=compose,
                         icon_name=icon_name, keep_icon=True, fields=fields, use_json=False, errors=[],
                         latest=latest)


def _publish_page(request: web.Request, status: int, *, fields: forms.PublishFields, **context) -> web.Response:
    return page(request, "publish.html", status, fields=fields.padded(), param_types=forms.PARAM_TYPES,
                title="Publish a version", **context)


async def _file_text(field, what: str) -> str | None:
    if field is None or isinstance(field, str) or not getattr(field, "filename", ""):
        return None
    try:
        return field.file.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed.field(what, "must be UTF-8 text") from None


def _icon(field) -> artifact.Icon | None:
    if field is None or isinstance(field, str) or not getattr(field, "filename", ""):
        return None
    data = field.file.read(artifact.MAX_ICON_BYTES + 1)
    if len(data) > artifact.MAX_ICON_BYTES:
        raise ValidationFailed.field("icon", f"at most {artifact.MAX_ICON_BYTES} bytes")
    try:
        return artifact.Icon(artifact.check_file_name(field.filename, "icon"), data, artifact.check_icon(data))
    except artifact.ArtifactInvalid as exc:
        raise ValidationFailed.field("icon", exc.message) from None


def _problem_lines(problem: ValidationFailed, parameters: list | None = None) -> list[str]:
    """A problem's field errors as sentences that name fields the way the form does."""
    if not problem.errors:
        return [problem.detail]
    return [f"{forms.field_label(e['pointer'], parameters)}: {e['detail']}" if e.get("pointer")
            else e.get("detail", "") for e in problem.errors]


async def publish(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _check_post(request, form)
    repository = str(form.get("repository", "")).strip()
    metadata_text = await _file_text(form.get("metadata_file"), "metadata") or str(form.get("metadata", ""))
    compose_field = form.get("compose_file")
    compose_text = await _file_text(compose_field, "compose") or str(form.get("compose", ""))
    compose_name = compose_field.filename if compose_text and getattr(compose_field, "filename", "") \
        else "compose.yaml"
    # The fields describe the version unless the JSON document is chosen (or is all that was sent:
    # a form from before the fields, or a script).
    use_json = form.get("use_json") == "true" or (bool(metadata_text.strip()) and "title" not in form)
    fields = forms.fields_from_form(form)
    version = str(form.get("version", "")).strip()
    icon_name = str(form.get("icon_name", "")) or None
    keep_icon = form.get("keep_icon") == "true"
    context = {"repository": repository, "metadata": metadata_text, "compose": compose_text,
               "icon_name": icon_name, "keep_icon": keep_icon, "use_json": use_json,
               "latest": str(form.get("latest", ""))}
    if form.get("action") in ("more_rows", "from_compose"):
        if form.get("action") == "from_compose":
            try:
                names = interpolate.variables(yamlsafe.load(compose_text)) if compose_text.strip() else []
            except AppStoreError as exc:
                return _publish_page(request, 422, fields=fields, errors=[f"Compose file: {exc.summary()}"],
                                     **context)
            fields = forms.rows_for_variables(fields, names)
        return _publish_page(request, 200, fields=fields, errors=[], **context)
    errors: list[str] = []
    status = 422
    metadata = None
    if use_json:
        try:
            metadata = (safejson.loads(metadata_text, unpaired_surrogates=False) if metadata_text.strip()
                        else None)
        except ValueError as exc:  # JsonTooDeep too: nesting is bounded before parsing
            status = 400
            errors.append(f"metadata: not valid JSON ({exc})"
                          if isinstance(exc, (safejson.JsonTooDeep, safejson.UnpairedSurrogate))
                          else "metadata: not valid JSON")
        if metadata is None and not errors:
            errors.append("metadata: required")
        if version and isinstance(metadata, dict) and isinstance(metadata.get("version"), dict):
            metadata["version"]["version"] = version
    else:
        upload = form.get("icon")
        chosen = upload.filename if getattr(upload, "filename", "") else None
        if not fields.key and repository:
            fields.key = default_key(repository)
        metadata = forms.metadata_from_fields(fields, compose_name, chosen or (icon_name if keep_icon else None))
        if not fields.title:
            errors.append("Title: required")
        if not fields.version:
            errors.append("Version: required (a semantic version such as 1.2.0)")
    if not compose_text.strip():
        errors.append("Compose file: required")
    parameters = (metadata.get("version", {}).get("parameters") if isinstance(metadata, dict)
                  and isinstance(metadata.get("version"), dict) else None)
    if not errors:
        try:
            name = artifact.check_file_name(compose_name, "compose")
            icon = _icon(form.get("icon"))
            if icon is None and keep_icon:
                icon = await _current_icon(request, repository, metadata)
            created = await _service(request).publish(request[_PRINCIPAL], repository,
                                                      Upload(((name, compose_text),), metadata, icon))
        except artifact.ArtifactInvalid as exc:
            errors.append(f"Compose file: {exc.message}")
        except ValidationFailed as problem:
            errors.extend(_problem_lines(problem, parameters if isinstance(parameters, list) else None))
        else:
            return see_other(request, "/apps/manage/" + quote(repository, safe="/") + "?"
                             + urlencode({"done": f"{created['version']}: published"}))
    return _publish_page(request, status, fields=fields, errors=errors, **context)


async def _current_icon(request: web.Request, repository: str, metadata) -> artifact.Icon | None:
    """The latest version's icon under the name the new metadata gives it, if it names one."""
    name = metadata.get("app", {}).get("icon") if isinstance(metadata, dict) and isinstance(
        metadata.get("app"), dict) else None
    if not isinstance(name, str) or not name:
        return None
    data, media_type, _ = await _service(request).icon(request[_PRINCIPAL], repository)
    return artifact.Icon(name, data, media_type)


def add_routes(app: web.Application) -> None:
    app[LOCAL_KEYS] = sessions.Keys.from_secret(secrets.token_bytes(32))
    async def to_index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/apps/")

    app.router.add_get("/apps", to_index)
    app.router.add_get("/apps/", wrap(browse))
    app.router.add_get("/apps/static/{file}", static)
    app.router.add_get("/apps/login", wrap(login_form))
    app.router.add_post("/apps/login", wrap(login))
    app.router.add_get("/apps/login/{provider}", wrap(start_provider_sign_in))
    app.router.add_get("/apps/login/{provider}/callback", wrap(finish_provider_sign_in))
    app.router.add_post("/apps/logout", wrap(logout))
    app.router.add_get("/apps/publish", wrap(publish_form))
    app.router.add_post("/apps/publish", wrap(publish))
    app.router.add_get("/apps/icon/{name:.+}", wrap(icon))
    app.router.add_get("/apps/manage/{name:.+}", wrap(manage))
    app.router.add_post("/apps/manage/{name:.+}", wrap(manage_action))
    app.router.add_get("/apps/app/{name:.+}", wrap(show_app))
    app.router.add_post("/apps/app/{name:.+}", wrap(render_app))
    app.router.add_get("/apps/{tail:.*}", wrap(not_found))  # last: an HTML 404 rather than OCI JSON


async def not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("there is no such page in the app catalog")


# For the console (hub.web.console), which shares the sessions, the CSRF check and the error pages.
read_form = _form
check_post = _check_post
require_sign_in = _require_sign_in


def principal_of(request: web.Request) -> Principal:
    return request[_PRINCIPAL]
