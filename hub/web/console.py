"""The web console under /console/: the registry (repositories, tags, manifests) and tenant and
platform administration, server-rendered over the same services the admin API uses.

Sessions, the CSRF and Origin checks, the security headers and the error pages are the app
store's (hub.web.pages). What a viewer may see follows auth.policy exactly as the JSON API does;
anything private the viewer may not read answers 404, the same as a name that does not exist, so a
page never tells an outsider that a private repository or a tenant's audit log is there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from auth import policy
from auth.policy import Manage, RepositoryInfo, tenant_of
from auth.service import robot_account

from ..errors import OciError
from ..handlers.admin.promotions import caller_checks
from ..keys import ADMINISTRATION, AUTH, CONFIG, GC, PROMOTIONS, PROXY, REGISTRY, RETENTION, WEBHOOKS
from ..problems import Forbidden, NotFound, Problem, ValidationFailed
from ..retention import RetentionError, parse_immutable_rules
from ..retention.immutable import protects
from ..tenancy.service import ROLES, Administration
from .address import address
from .pages import ENV, check_post, page, principal_of, read_form, require_sign_in, see_other, wrap

MAX_TAGS = 200
MAX_CONFIG_BYTES = 1 << 20
SORTS = {"name": "Name", "size": "Size", "tags": "Tags", "pushed": "Last push", "pulled": "Last pull"}
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
REVISION, SOURCE = "org.opencontainers.image.revision", "org.opencontainers.image.source"


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


ENV.filters["size"] = _size
ENV.filters["when"] = _when
ENV.filters["qs"] = lambda value: quote(str(value), safe="")


def _now() -> datetime:
    return datetime.now(UTC)


def _admin(request: web.Request) -> Administration:
    if ADMINISTRATION not in request.app:
        raise NotFound("the console needs accounts: it is there when auth.enabled is true")
    principal = principal_of(request)
    return request.app[ADMINISTRATION](principal.name or "anonymous")


def _repo_url(name: str) -> str:
    return "/console/r/" + quote(name, safe="/")


ENV.globals["repo_url"] = _repo_url
ENV.globals["manifest_url"] = lambda name, digest: _repo_url(name) + "/-/manifests/" + quote(digest, safe=":")


async def _readable(request: web.Request, name: str) -> RepositoryInfo:
    """The repository if the viewer may pull from it; 404 otherwise (also for a private one)."""
    admin = _admin(request)
    info = RepositoryInfo(name, tenant_of(name), await admin.repository_visibility(name))
    if info.tenant is None or not policy.can_read(principal_of(request), info, _now()):
        raise NotFound(f"no repository {name!r}")
    await admin.repository(name)  # 404 when it does not exist (an open registry may read anything)
    return info


def _tenant_admin(request: web.Request, tenant: str, what: Manage = Manage.SETTINGS) -> None:
    """Tenant admins and the platform admin only: 404 to outsiders, 403 to other members."""
    principal = principal_of(request)
    if policy.can_manage_tenant(principal, tenant, what) or AUTH not in request.app:
        return
    if policy.can_view_tenant(principal, tenant):
        raise Forbidden(f"only an admin of tenant {tenant!r} sees this page")
    raise NotFound(f"no tenant {tenant!r}")


def _nav(request: web.Request, tenant: str | None = None) -> dict:
    principal = principal_of(request)
    open_registry = AUTH not in request.app
    return {"tenant": tenant, "is_tenant_admin": bool(tenant) and (
                open_registry or policy.can_manage_tenant(principal, tenant, Manage.SETTINGS)),
            "is_member": bool(tenant) and (open_registry or policy.can_view_tenant(principal, tenant)),
            "is_platform_admin": open_registry or policy.can_manage_platform(principal)}


# The registry ----------------------------------------------------------------------------------
async def home(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    principal = principal_of(request)
    admin = _admin(request)
    visible = None if AUTH not in request.app else policy.visible_tenants(principal)
    tenants = await admin.list_tenants(500, None, only=visible)
    return page(request, "console/home.html", tenants=tenants, memberships=principal.memberships,
                title="Registry", **_nav(request))


async def tenant_repositories(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    principal = principal_of(request)
    admin = _admin(request)
    await admin.tenant(tenant)
    q = request.query.get("q", "")[:200].strip().lower()
    sort = request.query.get("sort", "name")
    sort = sort if sort in SORTS else "name"
    at = _now()
    rows = [(r, pushed, pulled) for r, pushed, pulled in await admin.repository_overview(tenant)
            if policy.can_read(principal, RepositoryInfo(r.name, tenant, r.public), at)]
    if not rows and not policy.can_view_tenant(principal, tenant) and AUTH in request.app:
        raise NotFound(f"no tenant {tenant!r}")  # an outsider learns nothing of a tenant with nothing public
    rows = [row for row in rows if not q or q in row[0].name.lower()]
    keys = {"name": lambda row: row[0].name, "size": lambda row: -row[0].size_bytes,
            "tags": lambda row: -row[0].tag_count, "pushed": lambda row: -(row[1] or 0),
            "pulled": lambda row: -(row[2] or 0)}
    rows.sort(key=keys[sort])
    return page(request, "console/repositories.html", rows=rows, q=q, sort=sort, sorts=SORTS,
                title=f"Repositories of {tenant}", **_nav(request, tenant))


async def _read_blob(request: web.Request, name: str, digest: str) -> bytes | None:
    registry = request.app[REGISTRY]
    try:
        blob = await registry.stat_blob(name, digest)
        if blob.size > MAX_CONFIG_BYTES:
            return None
        chunks = await registry.open_blob(blob)
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        return bytes(data)
    except OciError:
        return None


def _doc(content: bytes | None) -> dict:
    try:
        doc = json.loads(content or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _platform(p: object) -> str:
    if not isinstance(p, dict):
        return "unknown"
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


async def _describe(request: web.Request, name: str, reference: str, *, deep: bool) -> dict:
    """A manifest's digest, media type, total size and platforms; with `deep`, its layers, config,
    annotations, the index's children and the traceability labels."""
    try:
        record = await request.app[REGISTRY].get_manifest(name, reference)
    except OciError:
        raise NotFound(f"no manifest {reference!r} in {name!r}") from None
    doc = _doc(record.content)
    media_type = doc.get("mediaType") or record.media_type
    out = {"digest": record.digest, "media_type": media_type, "manifest_size": record.size,
           "annotations": doc.get("annotations") or {}, "artifact_type": record.artifact_type,
           "subject": record.subject, "children": [], "layers": [], "config": None, "labels": {}}
    if media_type in INDEX_TYPES or "manifests" in doc:
        children = [m for m in doc.get("manifests", []) if isinstance(m, dict)]
        out["platforms"] = [_platform(m.get("platform")) for m in children]
        out["children"] = [{"digest": m.get("digest", ""), "size": m.get("size", 0),
                            "platform": _platform(m.get("platform")), "media_type": m.get("mediaType", "")}
                           for m in children]
        total = 0
        for child in out["children"]:
            try:
                child_doc = _doc((await request.app[REGISTRY].get_manifest(name, child["digest"])).content)
            except OciError:
                continue
            total += sum(int(x.get("size", 0)) for x in child_doc.get("layers", []) if isinstance(x, dict))
        out["size"] = total
        out["kind"] = "index"
    else:
        layers = [x for x in doc.get("layers", []) if isinstance(x, dict)]
        out["layers"] = [{"digest": x.get("digest", ""), "size": int(x.get("size", 0)),
                          "media_type": x.get("mediaType", "")} for x in layers]
        out["size"] = sum(x["size"] for x in out["layers"])
        out["kind"] = "artifact" if doc.get("artifactType") else "image"
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        out["platforms"] = []
        if config.get("digest"):
            blob = await _read_blob(request, name, config["digest"])
            cfg = _doc(blob)
            if cfg.get("architecture") or cfg.get("os"):
                out["platforms"] = [_platform(cfg)]
            if deep:
                c = cfg.get("config") if isinstance(cfg.get("config"), dict) else {}
                out["config"] = {"digest": config["digest"], "media_type": config.get("mediaType", ""),
                                 "env": c.get("Env") or [], "entrypoint": c.get("Entrypoint") or [],
                                 "cmd": c.get("Cmd") or [], "workdir": c.get("WorkingDir", ""),
                                 "user": c.get("User", ""), "created": cfg.get("created", ""),
                                 "history": [h for h in cfg.get("history", []) if isinstance(h, dict)]}
                out["labels"] = c.get("Labels") or {}
    sources = {**out["labels"], **out["annotations"]}
    out["revision"], out["source"] = str(sources.get(REVISION, "")), str(sources.get(SOURCE, ""))
    return out


def _pull_commands(request: web.Request, reference: str) -> list[tuple[str, str]]:
    scheme, host = address(request)
    plain = scheme == "http"
    ref = f"{host}/{reference}"
    return [("docker", f"docker pull {ref}"),
            ("podman", f"podman pull{' --tls-verify=false' if plain else ''} {ref}"),
            ("nerdctl", f"nerdctl pull{' --insecure-registry' if plain else ''} {ref}"),
            ("ctr", f"ctr images pull{' --plain-http' if plain else ''} {ref}")]


async def _immutable_rules(admin: Administration, tenant: str):
    try:
        stored = await admin.immutable_tag_rules(tenant)
        return parse_immutable_rules(stored.document)
    except (NotFound, RetentionError):
        return ()


async def repository(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    info = await _readable(request, name)
    admin = _admin(request)
    summary = await admin.repository(name)
    rules = await _immutable_rules(admin, info.tenant)
    times = await admin.tag_times(info.tenant)
    tags = []
    for tag in await admin.tag_page(name, MAX_TAGS, None):
        described = await _describe(request, name, tag.digest, deep=False)
        rule = protects(rules, name, tag.name)
        tags.append({"name": tag.name, "digest": tag.digest, "pushed": tag.updated_at,
                     "pulled": times.get((name, tag.name), (None, None))[1], "size": described["size"],
                     "platforms": described["platforms"], "immutable": rule.describe() if rule else ""})
    tags.sort(key=lambda t: -t["pushed"])
    can_delete = policy.can_delete(principal_of(request), info, _now())
    first = tags[0]["name"] if tags else "latest"
    return page(request, "console/repository.html", repo=summary, name=name, tags=tags, can_delete=can_delete,
                pull=_pull_commands(request, f"{name}:{first}"), pull_tag=first,
                done=request.query.get("done", "")[:200], title=name, **_nav(request, info.tenant))


async def repository_action(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    form = await read_form(request)
    await check_post(request, form)
    info = await _readable(request, name)
    if not policy.can_delete(principal_of(request), info, _now()):
        raise Forbidden("your role in this tenant does not allow deleting tags")
    tag = form.get("tag")
    if form.get("action") != "delete-tag" or not isinstance(tag, str) or not tag:
        raise ValidationFailed.field("action", "send action=delete-tag with the tag to delete")
    await _admin(request).delete_tag(name, tag)
    return see_other(request, _repo_url(name) + "?" + urlencode({"done": f"{tag}: deleted"}))


async def manifest(request: web.Request) -> web.StreamResponse:
    name, digest = request.match_info["name"], request.match_info["digest"]
    info = await _readable(request, name)
    if not digest.startswith("sha256:") and not digest.startswith("sha512:"):
        raise NotFound("a manifest is named by its digest")
    described = await _describe(request, name, digest, deep=True)
    groups: dict[str, list] = {}
    try:
        referrers = await request.app[REGISTRY].list_referrers(name, described["digest"])
    except OciError:
        referrers = []
    for r in referrers:
        groups.setdefault(r.artifact_type or r.media_type, []).append(r)
    return page(request, "console/manifest.html", name=name, m=described, referrers=sorted(groups.items()),
                pull=_pull_commands(request, f"{name}@{described['digest']}"),
                title=f"{name}@{described['digest'][:19]}", **_nav(request, info.tenant))


# Tenant administration -------------------------------------------------------------------------
async def _signed_in_admin(request: web.Request, what: Manage = Manage.SETTINGS) -> str:
    tenant = request.match_info["tenant"]
    _tenant_admin(request, tenant, what)
    await _admin(request).tenant(tenant)
    return tenant


async def robots(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request, Manage.ROBOTS)
    return await _robots_page(request, tenant)


async def _robots_page(request: web.Request, tenant: str, status: int = 200, **extra) -> web.StreamResponse:
    listed = await _admin(request).list_robots(tenant, 500, None)
    context = {"created": None, "secret": "", "errors": [], "form": {}, **extra}
    return page(request, "console/robots.html", status, robots=listed, account=robot_account,
                done=request.query.get("done", "")[:200], title=f"Robots of {tenant}", **context,
                **_nav(request, tenant))


async def robots_action(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    await check_post(request, form)
    tenant = await _signed_in_admin(request, Manage.ROBOTS)
    admin = _admin(request)
    action, name = form.get("action"), str(form.get("name", "")).strip()
    if action == "create":
        patterns = [p for p in str(form.get("repositories", "")).replace(",", " ").split() if p]
        actions = [a for a in ("pull", "push", "delete") if form.get(f"action-{a}") == "on"]
        days_text = str(form.get("expires_in_days", "")).strip()
        try:
            days = float(days_text) if days_text else None
            if days is not None and days <= 0:
                raise ValueError
        except ValueError:
            return await _robots_page(request, tenant, 422, errors=["Expires in: a positive number of days."],
                                      form=form)
        try:
            record, secret = await admin.create_robot(tenant, name, patterns, actions, days)
        except ValidationFailed as problem:
            lines = [f"{e.get('pointer', '').removeprefix('#/') or 'form'}: {e['detail']}"
                     for e in problem.errors] or [problem.detail]
            return await _robots_page(request, tenant, 422, errors=lines, form=form)
        except Problem as problem:
            return await _robots_page(request, tenant, problem.status, errors=[problem.detail], form=form)
        return await _robots_page(request, tenant, created=record, secret=secret)
    if action == "revoke":
        await admin.revoke_robot(tenant, name)
        done = f"robot {name}: revoked"
    elif action == "delete":
        await admin.delete_robot(tenant, name)
        done = f"robot {name}: deleted"
    else:
        raise ValidationFailed.field("action", "must be create, revoke or delete")
    return see_other(request, f"/console/t/{quote(tenant)}/robots?" + urlencode({"done": done}))


async def tenant_admin(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request)
    admin = _admin(request)
    record = await admin.tenant(tenant)
    usage = await admin.tenant_usage(tenant)
    repos = sorted(await admin.repository_summaries(tenant, 500, None), key=lambda r: -r.size_bytes)[:10]
    members = await admin.tenant_members(tenant, 500, None)
    retention = immutable = None
    try:
        retention = json.dumps((await admin.retention_policy(tenant)).document, indent=2)
    except NotFound:
        pass
    try:
        immutable = json.dumps((await admin.immutable_tag_rules(tenant)).document, indent=2)
    except NotFound:
        pass
    gc_runs = await admin.gc_runs(10, tenant)
    webhooks = []
    service = request.app.get(WEBHOOKS)
    if service is not None:
        for hook in await service.list(tenant, 25, 0):
            webhooks.append((hook, await service.deliveries(hook.id, 10, None, None)))
    return page(request, "console/tenant.html", record=record, usage=usage, biggest=repos, members=members,
                retention=retention, immutable=immutable, gc_runs=gc_runs, webhooks=webhooks,
                title=f"Tenant {tenant}",
                **_nav(request, tenant))


def _epoch(text: str, field: str) -> float | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed.field(field, "a date and time such as 2026-12-07T20:00") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


async def audit(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request)
    filters = {k: request.query.get(k, "")[:200].strip() for k in ("actor", "action", "repository", "since", "until")}
    since, until = _epoch(filters["since"], "since"), _epoch(filters["until"], "until")
    admin = _admin(request)
    rows, before = [], None
    for _ in range(20):  # at most 4,000 rows are read for one page of matches
        batch = await admin.audit_entries(200, before, tenants=[tenant])
        for row in batch:
            if ((not filters["actor"] or row.actor == filters["actor"])
                    and (not filters["action"] or row.action.startswith(filters["action"]))
                    and (not filters["repository"] or row.target.split(":")[0].split("@")[0]
                         == filters["repository"])
                    and (since is None or row.at >= since) and (until is None or row.at <= until)):
                rows.append(row)
        if len(batch) < 200 or len(rows) >= 100:
            break
        before = batch[-1].id
    return page(request, "console/audit.html", rows=rows[:100], filters=filters, title=f"Audit log of {tenant}",
                **_nav(request, tenant))


async def _signed_in_post(request: web.Request) -> tuple[dict, web.StreamResponse | None]:
    """A POST's form, CSRF- and Origin-checked, and the redirect to sign in when nobody is."""
    form = await read_form(request)
    await check_post(request, form)
    return form, require_sign_in(request)


async def _dry_run_post(request: web.Request, real: str) -> tuple[str, web.StreamResponse | None]:
    """The tenant of a tenant admin's `action=dry-run` POST (or the redirect to sign in)."""
    form, redirect = await _signed_in_post(request)
    if redirect:
        return "", redirect
    tenant = await _signed_in_admin(request)
    if form.get("action") != "dry-run":
        raise ValidationFailed.field("action", f"must be dry-run ({real})")
    return tenant, None

# Promotions (any member of the tenant reads them; approvers decide) ------------------------------
MAX_PROMOTIONS = 100


async def _member(request: web.Request) -> str:
    """The tenant of the URL, for its members and the platform admin; 404 to anyone else."""
    tenant = request.match_info["tenant"]
    if AUTH in request.app and not policy.can_view_tenant(principal_of(request), tenant):
        raise NotFound(f"no tenant {tenant!r}")
    await _admin(request).tenant(tenant)
    return tenant


def _of_tenant(tenant: str):
    return lambda record: tenant in (tenant_of(record.source_repository), tenant_of(record.target_repository))


async def promotions(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _member(request)
    service = request.app[PROMOTIONS]
    principal = principal_of(request)
    _, _, has_role = caller_checks(request, principal)
    only = frozenset({tenant})
    pending = []
    for record in await service.list(tenants=only, state="pending", digest=None, limit=MAX_PROMOTIONS, before=None):
        pending.append({"p": record, "approve": service.may_decide(record, principal.name, has_role, "approved"),
                        "reject": service.may_decide(record, principal.name, has_role, "rejected"),
                        "withdraw": record.requested_by == principal.name})
    recent = [r for r in await service.list(tenants=only, state=None, digest=None, limit=MAX_PROMOTIONS, before=None)
              if r.state != "pending"][:50]
    return page(request, "console/promotions.html", pending=pending, recent=recent, viewer=principal.name,
                done=request.query.get("done", "")[:200], title=f"Promotions of {tenant}", **_nav(request, tenant))


async def promotions_action(request: web.Request) -> web.StreamResponse:
    form, redirect = await _signed_in_post(request)
    if redirect:
        return redirect
    tenant = await _member(request)
    action, raw = form.get("action"), str(form.get("id", ""))
    if action not in ("approve", "reject"):
        raise ValidationFailed.field("action", "must be approve or reject")
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2 ** 62):
        raise NotFound(f"no promotion {raw[:40]!r}")
    principal = principal_of(request)
    service = request.app[PROMOTIONS]
    record = await service.find(int(raw), _of_tenant(tenant))
    _, _, has_role = caller_checks(request, principal)
    reason = str(form.get("reason", "")).strip()[:1000] or None
    decided = await getattr(service, action)(principal.name, record, has_role, reason)
    done = f"promotion {decided.id} to {decided.target}: {decided.state}"
    return see_other(request, f"/console/t/{quote(tenant)}/promotions?" + urlencode({"done": done}))


# Garbage collection reports ---------------------------------------------------------------------------
async def gc_reports(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request)
    return await _gc_page(request, tenant)


async def _gc_page(request: web.Request, tenant: str, preview=None) -> web.StreamResponse:
    runs = await _admin(request).gc_runs(100, tenant)
    return page(request, "console/gc.html", runs=runs, scope=tenant, preview=preview, title=f"GC runs of {tenant}",
                **_nav(request, tenant))


async def gc_action(request: web.Request) -> web.StreamResponse:
    """A dry run of GC over the tenant, as a tenant admin may ask the API for (audited gc.run there too)."""
    tenant, redirect = await _dry_run_post(request, "a real pass: the platform admin, by API or CLI")
    if redirect:
        return redirect
    report = await request.app[GC].run(dry_run=True, tenant=tenant)
    await _admin(request).audit("gc.run", tenant, tenant=tenant)
    return await _gc_page(request, tenant, preview=report)


async def platform_gc(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    if AUTH in request.app and not policy.can_manage_platform(principal_of(request)):
        raise NotFound("there is no such page")
    runs = await _admin(request).gc_runs(100, None)
    return page(request, "console/gc.html", runs=runs, scope=None, preview=None, title="GC runs", **_nav(request))


# Retention and immutability, with a dry-run preview --------------------------------------------------
async def retention(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request)
    return await _retention_page(request, tenant)


async def _retention_page(request: web.Request, tenant: str, preview=None) -> web.StreamResponse:
    admin = _admin(request)
    try:
        stored = await admin.retention_policy(tenant)
        document = stored.document
    except NotFound:
        stored, document = None, None
    keeps: dict[str, int] = {}
    groups: dict[str, list] = {}
    if preview is not None:
        for verdict in preview.verdicts:
            for rule in verdict.rules:
                keeps[rule] = keeps.get(rule, 0) + 1
        for verdict in preview.deleted:
            groups.setdefault(verdict.reason, []).append(verdict)
    listed = [("rules", (document or {}).get("rules", []))] + [
        (f"overrides[{i}].rules", override.get("rules", []))
        for i, override in enumerate((document or {}).get("overrides", [])) if isinstance(override, dict)]
    rules = [(f"{where}[{i}]", json.dumps(rule, sort_keys=True), keeps.get(f"{where}[{i}]", 0))
             for where, items in listed for i, rule in enumerate(items) if isinstance(rule, dict)]
    immutable = [rule.describe() for rule in await _immutable_rules(admin, tenant)]
    return page(request, "console/retention.html", stored=stored, document=document, rules=rules,
                immutable=immutable, preview=preview, groups=sorted(groups.items()),
                title=f"Retention of {tenant}", **_nav(request, tenant))


async def retention_action(request: web.Request) -> web.StreamResponse:
    tenant, redirect = await _dry_run_post(request, "a real run: the API or daohub retention run")
    if redirect:
        return redirect
    report = await request.app[RETENTION].run(dry_run=True, tenant=tenant, trigger="console",
                                              actor=principal_of(request).name)
    return await _retention_page(request, tenant, preview=report)


# Members and roles (tenant admins) --------------------------------------------------------------------
async def members(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request, Manage.MEMBERS)
    return await _members_page(request, tenant)


async def _members_page(request: web.Request, tenant: str, status: int = 200, errors=()) -> web.StreamResponse:
    listed = await _admin(request).tenant_members(tenant, 500, None)
    return page(request, "console/members.html", status, members=listed, roles=ROLES, errors=list(errors),
                done=request.query.get("done", "")[:200], title=f"Members of {tenant}", **_nav(request, tenant))


async def members_action(request: web.Request) -> web.StreamResponse:
    form, redirect = await _signed_in_post(request)
    if redirect:
        return redirect
    tenant = await _signed_in_admin(request, Manage.MEMBERS)
    action, username = form.get("action"), str(form.get("username", "")).strip()
    if action == "set":
        role = str(form.get("role", ""))
        if role not in ROLES:
            return await _members_page(request, tenant, 422, [f"Role: one of {', '.join(ROLES)}."])
        try:
            await _admin(request).set_member(tenant, username, role)
        except NotFound:
            return await _members_page(request, tenant, 404, [f"User {username!r}: there is no such user."])
        done = f"{username}: {role}"
    elif action == "remove":
        await _admin(request).set_member(tenant, username, None)
        done = f"{username}: removed"
    else:
        raise ValidationFailed.field("action", "must be set or remove")
    return see_other(request, f"/console/t/{quote(tenant)}/members?" + urlencode({"done": done}))


# Platform administration -----------------------------------------------------------------------
async def platform(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    if AUTH in request.app and not policy.can_manage_platform(principal_of(request)):
        raise NotFound("there is no such page")
    admin = _admin(request)
    tenants = [(t, await admin.tenant_usage(t.name)) for t in await admin.list_tenants(500, None)]
    users = await admin.list_users(500, None)
    upstreams = []
    proxy = request.app.get(PROXY)
    if proxy is not None:
        await proxy.router.refresh()
        hits = _cache_counts(proxy)
        upstreams = [{"name": name, "url": getattr(up, "url", ""), "anonymous": up.access.anonymous,
                      "max_size": up.max_size_bytes or None, **hits.get(name, {"hits": 0, "lookups": 0})}
                     for name, up in sorted(proxy.router.upstreams.items())]
    keys = []
    auth = request.app.get(AUTH)
    if auth is not None:
        ring = auth.verifier_keyring()
        keys = [{"kid": k.kid, "created": k.created_at.timestamp(), "signing": i == 0}
                for i, k in enumerate(ring.keys)]
    return page(request, "console/platform.html", tenants=tenants, users=users, upstreams=upstreams, keys=keys,
                public_url=request.app[CONFIG].server.public_url, title="Platform", **_nav(request))


# Your account: roles in force and personal CLI secrets ------------------------------------------------
async def account(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    return await _account_page(request)


async def _account_page(request: web.Request, status: int = 200, **extra) -> web.StreamResponse:
    principal = principal_of(request)
    auth = request.app[AUTH]
    context = {"created": None, "errors": [], "done": request.query.get("done", "")[:200], **extra}
    return page(request, "console/account.html", status, name=principal.name,
                provider=await auth.provider_label(principal.name), is_admin=principal.is_platform_admin,
                memberships=sorted((t, r.value) for t, r in principal.memberships.items()),
                secrets=await auth.cli_secrets(principal.name), title="Your account", **context, **_nav(request))


async def account_action(request: web.Request) -> web.StreamResponse:
    form, redirect = await _signed_in_post(request)
    if redirect:
        return redirect
    principal = principal_of(request)
    auth = request.app[AUTH]
    action = form.get("action")
    if action == "create":
        name = str(form.get("name", "")).strip()
        if not name or len(name) > 64 or not name.isprintable():
            return await _account_page(request, 422, errors=["Name: 1 to 64 printable characters."])
        made = await auth.create_cli_secret(principal.name, name, principal.name)
        if made is None:
            return await _account_page(request, 409, errors=["You have as many CLI secrets as allowed: "
                                                             "delete one first."])
        response = await _account_page(request, created=made)
        return response
    if action == "delete":
        secret_id = str(form.get("id", ""))[:64]
        if not await auth.delete_cli_secret(principal.name, secret_id, principal.name):
            raise NotFound("no such CLI secret")
        return see_other(request, "/console/account?" + urlencode({"done": "CLI secret deleted"}))
    raise ValidationFailed("unknown action")


def _cache_counts(proxy) -> dict[str, dict[str, int]]:
    """This replica's cache lookups per upstream since it started (daohub_proxy_cache_requests)."""
    counts: dict[str, dict[str, int]] = {}
    for metric in proxy.metrics.cache.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            entry = counts.setdefault(sample.labels.get("upstream", ""), {"hits": 0, "lookups": 0})
            entry["lookups"] += int(sample.value)
            if sample.labels.get("result") == "hit":
                entry["hits"] += int(sample.value)
    return counts


async def not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("there is no such page in the console")


def add_routes(app: web.Application) -> None:
    async def to_index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/console/")

    async def to_login(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/apps/login?next=/console/")

    app.router.add_get("/login", to_login)
    app.router.add_get("/console", to_index)
    app.router.add_get("/console/", wrap(home))
    app.router.add_get("/console/platform", wrap(platform))
    app.router.add_get("/console/account", wrap(account))
    app.router.add_post("/console/account", wrap(account_action))
    app.router.add_get("/console/t/{tenant}/", wrap(tenant_repositories))
    app.router.add_get("/console/t/{tenant}/admin", wrap(tenant_admin))
    app.router.add_get("/console/t/{tenant}/robots", wrap(robots))
    app.router.add_post("/console/t/{tenant}/robots", wrap(robots_action))
    app.router.add_get("/console/t/{tenant}/audit", wrap(audit))
    app.router.add_get("/console/t/{tenant}/promotions", wrap(promotions))
    app.router.add_post("/console/t/{tenant}/promotions", wrap(promotions_action))
    app.router.add_get("/console/t/{tenant}/gc", wrap(gc_reports))
    app.router.add_post("/console/t/{tenant}/gc", wrap(gc_action))
    app.router.add_get("/console/t/{tenant}/retention", wrap(retention))
    app.router.add_post("/console/t/{tenant}/retention", wrap(retention_action))
    app.router.add_get("/console/t/{tenant}/members", wrap(members))
    app.router.add_post("/console/t/{tenant}/members", wrap(members_action))
    app.router.add_get("/console/platform/gc", wrap(platform_gc))
    app.router.add_get("/console/r/{name:.+}/-/manifests/{digest}", wrap(manifest))
    app.router.add_get("/console/r/{name:.+}", wrap(repository))
    app.router.add_post("/console/r/{name:.+}", wrap(repository_action))
    app.router.add_get("/console/{tail:.*}", wrap(not_found))
