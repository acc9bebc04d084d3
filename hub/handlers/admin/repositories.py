"""Repositories of a tenant, their visibility and deletion (maintainer and up), and their tags."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import RepositoryInfo, tenant_of

from ...tenancy.service import Administration, RepositorySummary, TagRecord
from .common import (
    administration,
    collect,
    ensure,
    json_body,
    json_response,
    no_content,
    now,
    page,
    page_params,
    rfc3339,
    user,
)


def repository_json(repo: RepositorySummary) -> dict:
    return {"name": repo.name, "tenant": tenant_of(repo.name), "public": repo.public, "size_bytes": repo.size_bytes,
            "tag_count": repo.tag_count, "manifest_count": repo.manifest_count,
            "created_at": rfc3339(repo.created_at)}


def tag_json(tag: TagRecord) -> dict:
    return {"name": tag.name, "digest": tag.digest, "updated_at": rfc3339(tag.updated_at)}


async def _info(admin: Administration, name: str) -> RepositoryInfo:
    """What the policy needs to know of repository `name` (it may not exist)."""
    return RepositoryInfo(name, tenant_of(name), await admin.repository_visibility(name))


async def list_repositories(request: web.Request) -> web.StreamResponse:
    """Every repository of the tenant the caller may pull from (outsiders see the public ones)."""
    principal = await user(request)
    tenant = request.match_info["tenant"]
    limit, after = page_params(request)
    admin = administration(request, principal)
    await admin.tenant(tenant)
    at = now()

    def visible(repo: RepositorySummary) -> bool:
        return policy.can_read(principal, RepositoryInfo(repo.name, tenant_of(repo.name), repo.public), at)

    repos, more = await collect(lambda n, a: admin.repository_summaries(tenant, n, a),
                                lambda r: r.name, limit, after, visible)
    return page(request, [repository_json(r) for r in repos], repos[-1].name if repos else None, more, limit)


async def update_repository(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name = request.match_info["name"]
    ensure(policy.can_administer_repository(principal, RepositoryInfo.for_name(name)),
           "only a maintainer or admin of the tenant changes a repository")
    body = await json_body(request, "RepositoryUpdate")
    admin = administration(request, principal)
    await admin.set_repository_public(name, body["public"])
    return json_response(repository_json(await admin.repository(name)))


async def delete_repository(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name = request.match_info["name"]
    ensure(policy.can_administer_repository(principal, RepositoryInfo.for_name(name)),
           "only a maintainer or admin of the tenant deletes a repository")
    await administration(request, principal).delete_repository(name)
    return no_content()


async def list_tags(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name = request.match_info["name"]
    admin = administration(request, principal)
    ensure(policy.can_read(principal, await _info(admin, name), now()), "you may not pull from this repository")
    limit, after = page_params(request)
    tags, more = await collect(lambda n, a: admin.tag_page(name, n, a), lambda t: t.name, limit, after)
    return page(request, [tag_json(t) for t in tags], tags[-1].name if tags else None, more, limit)


async def delete_tag(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name, tag = request.match_info["name"], request.match_info["tag"]
    admin = administration(request, principal)
    ensure(policy.can_delete(principal, await _info(admin, name), now()), "you may not delete from this repository")
    await admin.delete_tag(name, tag)
    return no_content()
