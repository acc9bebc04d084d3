"""Identity providers (platform admin): those of the config file (`auth.providers`), read-only,
and a lookup that asks one of them about a user, as a sign-in would (docs/sign-in.md).

Secrets are never returned: `bind_password_set` says whether the provider has one."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.provider_settings import ProviderSpec
from auth.providers import ProviderUnavailable

from ...keys import AUTH, CONFIG
from ...problems import NotFound
from .common import ensure, json_body, json_response, page, page_params, user

_ONLY_ADMIN = "only the platform admin reads identity providers"
_LDAP_FIELDS = ("url", "start_tls", "verify_tls", "ca_file", "bind_dn", "user_search_base", "user_filter",
                "username_attribute", "display_name_attribute", "email_attribute", "group_source",
                "member_of_attribute", "group_search_base", "group_filter", "timeout_seconds")


def provider_json(spec: ProviderSpec) -> dict:
    ldap = {key: getattr(spec.ldap, key) for key in _LDAP_FIELDS}
    ldap["bind_password_set"] = bool(spec.ldap.bind_password or spec.ldap.bind_password_file)
    return {"name": spec.name, "type": spec.type, "cache_seconds": spec.cache_seconds, "source": "config",
            "read_only": True, "ldap": ldap,
            "group_mappings": [{"group": m.group, "tenant": m.tenant or None, "role": m.role or None,
                                "platform_admin": m.platform_admin} for m in spec.group_mappings]}


async def _specs(request: web.Request) -> dict[str, ProviderSpec]:
    ensure(policy.can_manage_platform(await user(request)), _ONLY_ADMIN)
    return {spec.name: spec for spec in request.app[CONFIG].auth.providers}


def _one(specs: dict[str, ProviderSpec], name: str) -> ProviderSpec:
    if name not in specs:
        raise NotFound(f"no identity provider {name!r}")
    return specs[name]


async def list_identity_providers(request: web.Request) -> web.StreamResponse:
    specs = await _specs(request)
    limit, after = page_params(request)
    names = [n for n in specs if after is None or n > after]
    names.sort()
    items = [provider_json(specs[n]) for n in names[:limit]]
    return page(request, items, items[-1]["name"] if items else None, len(names) > limit, limit)


async def get_identity_provider(request: web.Request) -> web.StreamResponse:
    return json_response(provider_json(_one(await _specs(request), request.match_info["provider"])))


async def lookup_identity_provider_user(request: web.Request) -> web.StreamResponse:
    """What the provider says about a user now (no cache), and the roles its rules give them."""
    spec = _one(await _specs(request), request.match_info["provider"])
    body = await json_body(request, "ProviderLookup")
    try:
        found = await request.app[AUTH].directory_preview(spec.name, body["username"])
    except ProviderUnavailable as exc:
        return json_response({"provider": spec.name, "available": False, "error": str(exc), "account": None})
    account = None
    if found is not None:
        entry, roles, platform_admin = found
        account = {"username": entry.username, "display_name": entry.display_name, "email": entry.email,
                   "groups": sorted(entry.groups), "platform_admin": platform_admin,
                   "memberships": [{"tenant": t, "role": r.value} for t, r in sorted(roles.items())]}
    return json_response({"provider": spec.name, "available": True, "error": None, "account": account})
