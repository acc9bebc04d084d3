"""The identity area's target API (docs/design/metadata-split.md §3.3) mapped onto today's
MetadataStore (`SqliteStore` / `PostgresStore`, through hub/db/sqlite_identity.py and
postgres_identity.py), so the contract suite pins today's behaviour before anything moves. Step 4d
of the plan replaces each sub-store here by the real area store (`hub/db/identity/`) and deletes
its adapter; the tests do not change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from hub.db.base import MetadataStore
from hub.db.identity import (
    AuditRecord,
    MemberRecord,
    RefreshTokenRecord,
    RobotRecord,
    SigningKeyRecord,
    TenantRecord,
    UserRecord,
)


class _Over:
    def __init__(self, store: MetadataStore):
        self.store = store


class Users(_Over):
    async def create(self, username: str, password_hash: str, *, is_admin: bool = False) -> bool:
        return await self.store.create_user(username, password_hash, is_admin=is_admin)

    async def get(self, username: str) -> UserRecord | None:
        return await self.store.get_user(username)

    async def count(self) -> int:
        return await self.store.count_users()

    async def set_password(self, username: str, password_hash: str) -> bool:
        return await self.store.set_password(username, password_hash)

    async def memberships(self, username: str) -> dict[str, str]:
        return await self.store.memberships(username)

    async def page(self, limit: int, after: str | None) -> list[UserRecord]:
        return await self.store.list_users(limit, after)

    async def update(self, username: str, changes: Mapping[str, bool]) -> UserRecord | None:
        return await self.store.update_user(username, changes)

    async def delete(self, username: str) -> bool:
        return await self.store.delete_user(username)


class Tenants(_Over):
    async def create(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool:
        return await self.store.create_tenant(name, display_name, quota_bytes)

    async def get(self, name: str) -> TenantRecord | None:
        return await self.store.get_tenant(name)

    async def page(self, limit: int, after: str | None, *, only: Collection[str] | None = None) -> list[TenantRecord]:
        return await self.store.list_tenants(limit, after, only=only)

    async def update(self, name: str, changes: Mapping[str, object]) -> TenantRecord | None:
        return await self.store.update_tenant(name, changes)

    async def delete(self, name: str) -> bool:
        return await self.store.delete_tenant(name)

    async def set_member(self, tenant: str, username: str, role: str | None) -> bool:
        return await self.store.set_membership(tenant, username, role)

    async def members(self, tenant: str, limit: int, after: str | None) -> list[MemberRecord]:
        return await self.store.tenant_members(tenant, limit, after)


class Robots(_Over):
    async def create(self, robot: RobotRecord) -> bool:
        return await self.store.create_robot(robot)

    async def get(self, tenant: str, name: str) -> RobotRecord | None:
        return await self.store.get_robot(tenant, name)

    async def page(self, tenant: str, limit: int, after: str | None) -> list[RobotRecord]:
        return await self.store.list_robots(tenant, limit, after)

    async def revoke(self, tenant: str, name: str) -> bool:
        return await self.store.revoke_robot(tenant, name)

    async def delete(self, tenant: str, name: str) -> bool:
        return await self.store.delete_robot(tenant, name)


class Credentials(_Over):
    async def signing_keys(self) -> list[SigningKeyRecord]:
        return await self.store.signing_keys()

    async def add_signing_key(self, kid: str, private_pem: str, *, retire_older_than_rank: int | None = None) -> None:
        await self.store.add_signing_key(kid, private_pem, retire_older_than_rank=retire_older_than_rank)

    async def add_refresh_token(self, jti: str, subject: str, client_id: str, user_agent: str, issued_at: float,
                                expires_at: float) -> None:
        await self.store.add_refresh_token(jti, subject, client_id, user_agent, issued_at, expires_at)

    async def use_refresh_token(self, jti: str, subject: str) -> RefreshTokenRecord | None:
        return await self.store.use_refresh_token(jti, subject)

    async def refresh_tokens(self, subject: str, limit: int, after: str | None) -> list[RefreshTokenRecord]:
        return await self.store.list_refresh_tokens(subject, limit, after)

    async def revoke_refresh_tokens(self, subject: str, jti: str | None = None) -> int:
        return await self.store.revoke_refresh_tokens(subject, jti)

    async def add_web_session(self, id_hash: str, username: str, expires_at: float) -> None:
        await self.store.add_web_session(id_hash, username, expires_at)

    async def web_session_live(self, id_hash: str, username: str) -> bool:
        return await self.store.web_session_live(id_hash, username)

    async def end_web_session(self, id_hash: str) -> None:
        await self.store.end_web_session(id_hash)


class Limiter(_Over):
    async def reserve(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        return await self.store.reserve_login_attempt(limits, window)

    async def release(self, clear: str, release: Sequence[str]) -> None:
        await self.store.release_login_attempt(clear, release)


class Audit(_Over):
    async def append(self, actor: str, action: str, target: str, detail_json: str | None = None, *,
                     tenant: str | None = None) -> None:
        await self.store.audit(actor, action, target, detail_json, tenant=tenant)

    async def page(self, limit: int, before_id: int | None, *,
                   tenants: Collection[str] | None = None) -> list[AuditRecord]:
        return await self.store.audit_entries(limit, before_id, tenants=tenants)


@dataclasses.dataclass(frozen=True)
class IdentityStores:
    users: Users
    tenants: Tenants
    robots: Robots
    credentials: Credentials
    limiter: Limiter
    audit: Audit


def identity_over(store: MetadataStore) -> IdentityStores:
    return IdentityStores(Users(store), Tenants(store), Robots(store), Credentials(store), Limiter(store),
                          Audit(store))
