"""Upstreams managed through the admin API: their rules, and changes with an audit row each.

Upstreams come from two places. Those of the config file are read-only here (change the
file and restart). Those created through the API live in the metadata store, so every
replica serves the same set: the Router reloads it when the store's change counter moves.

Credentials: an upstream's password has to be sent to the upstream, so it is stored as
given (a hash would not do), in the metadata store, which is as sensitive as the config file
that holds the config upstreams' passwords. The API accepts it and never returns it (only
whether one is set); it is never logged, and audit rows say only that it changed. Whoever
can read the database can read it: protect database backups like the config file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..db.proxy_store import UpstreamRecord
from ..problems import Conflict, NotFound, ValidationFailed
from ..registry.names import COMPONENT_RE
from ..secret import Secret
from .names import HOST_PORT
from .routing import API, Router, Upstream
from .settings import UpstreamSpec

MAX_NAME_LENGTH = 64
MAX_URL_LENGTH = 2048
MAX_ALIASES = 20
MAX_TENANTS = 200
MAX_REVALIDATE_SECONDS = 10 * 365 * 86400
MAX_TTL_DAYS = 36500
MAX_SIZE_BYTES = 2 ** 63 - 1
MAX_CREDENTIAL_LENGTH = 4096
DEFAULT_REVALIDATE_SECONDS = 300


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream's URL, or None: http(s)://host[:port] and nothing else."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "is not a valid URL (bad host or port)"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "must name a host"
    if "@" in parts.netloc:
        return "must not hold credentials (set username and password instead)"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not have a query or fragment"
    if parts.path not in ("", "/"):
        return "must not have a path: the registry API is at <url>/v2/"
    return None


def check_fields(body: Mapping[str, Any]) -> None:
    """The rules the JSON schema cannot say (the schema has checked types and bounds)."""
    if "url" in body and (problem := url_problem(body["url"])) is not None:
        raise ValidationFailed.field("url", problem)
    for i, alias in enumerate(body.get("aliases") or ()):
        if not HOST_PORT.fullmatch(alias):
            raise ValidationFailed.field(f"/aliases/{i}", "must be a registry host[:port] in lowercase")
    for i, tenant in enumerate(body.get("tenants") or ()):
        if not COMPONENT_RE.fullmatch(tenant):
            raise ValidationFailed.field(f"/tenants/{i}", "must be a tenant name")


def upstream_from_record(record: UpstreamRecord) -> Upstream:
    return Upstream.from_config(UpstreamSpec(
        name=record.name, url=record.url, aliases=list(record.aliases), username=record.username,
        password=Secret(record.password), manifest_revalidate_seconds=record.manifest_revalidate_seconds,
        tenants=list(record.tenants), anonymous_pull=record.anonymous_pull,
        max_size_bytes=record.max_size_bytes or 0, ttl_days=record.ttl_days or 0.0), source=API)


def _audit_detail(body: Mapping[str, Any]) -> dict[str, Any]:
    detail = {k: v for k, v in body.items() if k != "password"}
    if "password" in body:
        detail["password_changed"] = True
    return detail


class UpstreamAdmin:
    """Changes to API upstreams by `actor`, each checked against the running set and tenants."""

    def __init__(self, store, router: Router, actor: str):
        self.store = store
        self.router = router
        self.actor = actor

    async def _audit(self, action: str, target: str, detail: Mapping[str, Any] | None = None) -> None:
        await self.store.audit(self.actor, action, target,
                               json.dumps(dict(detail), sort_keys=True) if detail is not None else None, tenant=None)

    async def _claimed(self, names: list[str], own: str | None) -> None:
        """409 if a name is taken by another upstream (a name or an alias) or is a tenant's name."""
        await self.router.refresh(force=True)
        for host in names:
            holder = self.router.by_host(host)
            if holder is not None and holder.name != own:
                raise Conflict(f"{host!r} already names upstream {holder.name!r}")
            if not COMPONENT_RE.fullmatch(host):
                continue  # not a path prefix: shadows nothing
            if await self.store.get_tenant(host) is not None:
                raise Conflict(f"{host!r} is the name of a tenant: an upstream of that name would shadow "
                               "the tenant's repositories")
            if host != own and await self.store.repository_summaries(host, 1, None):
                raise Conflict(f"repositories named {host}/... exist: an upstream of that name would shadow them")

    def _configured(self, name: str) -> None:
        if name in self.router.config_names:
            raise Conflict(f"upstream {name!r} is defined in the config file: change it there (read-only here)")

    async def create(self, body: Mapping[str, Any]) -> UpstreamRecord:
        check_fields(body)
        name = body["name"]
        aliases = tuple(dict.fromkeys(a for a in body.get("aliases", ()) if a != name))
        username, password = body.get("username") or "", body.get("password") or ""  # null: none
        if bool(username) != bool(password):
            raise ValidationFailed.field("password", "username and password go together: set both or neither")
        await self._claimed([name, *aliases], None)
        now = time.time()
        record = UpstreamRecord(
            name=name, url=body["url"].rstrip("/"), aliases=aliases, username=username, password=password,
            manifest_revalidate_seconds=body.get("manifest_revalidate_seconds", DEFAULT_REVALIDATE_SECONDS),
            tenants=tuple(body.get("tenants", ())), anonymous_pull=body.get("anonymous_pull", False),
            max_size_bytes=body.get("max_size_bytes"), ttl_days=body.get("ttl_days"), created_at=now,
            updated_at=now)
        if not await self.store.create_upstream(record):
            raise Conflict(f"upstream {name!r} already exists")
        await self._audit("upstream.create", name, _audit_detail(body))
        self.router.invalidate()
        return record

    async def update(self, name: str, body: Mapping[str, Any]) -> UpstreamRecord:
        self._configured(name)
        current = await self.store.get_upstream(name)
        if current is None:
            raise NotFound(f"no upstream {name!r}")
        check_fields(body)
        changes = dict(body)
        if "url" in changes:
            changes["url"] = changes["url"].rstrip("/")
        if "aliases" in changes:
            changes["aliases"] = tuple(dict.fromkeys(a for a in changes["aliases"] if a != name))
            await self._claimed(list(changes["aliases"]), name)
        for key in ("username", "password"):
            if key in changes and changes[key] is None:
                changes[key] = ""
        username = changes.get("username", current.username)
        password = changes.get("password", current.password)
        if bool(username) != bool(password):
            raise ValidationFailed.field("password", "username and password go together: set both or neither")
        record = await self.store.update_upstream(name, changes)
        if record is None:
            raise NotFound(f"no upstream {name!r}")
        await self._audit("upstream.update", name, _audit_detail(body))
        self.router.invalidate()
        return record

    async def delete(self, name: str) -> None:
        self._configured(name)
        if not await self.store.delete_upstream(name):
            raise NotFound(f"no upstream {name!r}")
        await self._audit("upstream.delete", name)
        self.router.invalidate()
