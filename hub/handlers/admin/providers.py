"""Identity providers (platform admin): those of the config file (`auth.providers`), read-only, and
those made here, kept in the metadata store (auth.provider_admin); a lookup that asks one of them
about a user, as a sign-in would (docs/sign-in.md). Only the platform admin configures them, and
with them the outbound URLs DaoHub dials.

Secrets are never returned: `bind_password_set` / `client_secret_set` say whether there is one."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.provider_admin import ProviderAdmin, ProviderView
from auth.provider_settings import SECRET_FIELDS, spec_to_json
from auth.providers import ProviderUnavailable

from ...keys import AUTH, PROVIDER_ADMIN
from ...problems import NotFound
from .common import ensure, json_body, json_response, no_content, page, page_params, rfc3339, user

_ONLY_ADMIN = "only the platform admin manages identity providers"


def provider_json(view: ProviderView) -> dict:
    spec = view.spec
    doc = spec_to_json(spec)
    section = doc[spec.type]
    section[f"{SECRET_FIELDS[spec.type]}_set"] = view.secret_set
    return {"name": spec.name, "type": spec.type, "cache_seconds": spec.cache_seconds, "source": view.source,
            "read_only": view.source == "config", "created_at": rfc3339(view.created_at),
            "updated_at": rfc3339(view.updated_at), spec.type: section,
            "group_mappings": [{"group": m.group, "tenant": m.tenant or None, "role": m.role or None,
                                "platform_admin": m.platform_admin} for m in spec.group_mappings]}


async def _admin(request: web.Request) -> ProviderAdmin:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), _ONLY_ADMIN)
    return request.app[PROVIDER_ADMIN](principal.name)


async def list_identity_providers(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    limit, after = page_params(request)
    views = [v for v in await admin.list() if after is None or v.spec.name > after]
    items = [provider_json(v) for v in views[:limit]]
    return page(request, items, items[-1]["name"] if items else None, len(views) > limit, limit)


async def get_identity_provider(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    return json_response(provider_json(await admin.get(request.match_info["provider"])))


async def create_identity_provider(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    view = await admin.create(await json_body(request, "IdentityProviderCreate"))
    return json_response(provider_json(view), 201, {"Location": f"/api/v1/identity-providers/{view.spec.name}"})


async def update_identity_provider(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    body = await json_body(request, "IdentityProviderUpdate")
    return json_response(provider_json(await admin.update(request.match_info["provider"], body)))


async def delete_identity_provider(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    await admin.delete(request.match_info["provider"])
    return no_content()


async def lookup_identity_provider_user(request: web.Request) -> web.StreamResponse:
    """What the provider says about a user now (no cache), and the roles its rules give them. For an
    OIDC provider, which cannot be asked: what its last ID token of the user said."""
    admin = await _admin(request)
    name = (await admin.get(request.match_info["provider"])).spec.name
    body = await json_body(request, "ProviderLookup")
    try:
        found = await request.app[AUTH].directory_preview(name, body["username"])
    except ProviderUnavailable as exc:
        return json_response({"provider": name, "available": False, "error": str(exc), "account": None})
    except KeyError:
        raise NotFound(f"identity provider {name!r} is not in service (see the log)") from None
    account = None
    if found is not None:
        entry, roles, platform_admin = found
        account = {"username": entry.username, "display_name": entry.display_name, "email": entry.email,
                   "groups": sorted(entry.groups), "platform_admin": platform_admin,
                   "memberships": [{"tenant": t, "role": r.value} for t, r in sorted(roles.items())]}
    return json_response({"provider": name, "available": True, "error": None, "account": account})
