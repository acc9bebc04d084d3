"""PostgreSQL implementation of IdentityStore (mixed into PostgresStore).

Same semantics as sqlite_identity.py; where SQLite relies on its single writer, a row lock
or a single-statement upsert keeps replicas from racing (see the notes at each method).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import asyncpg

from ..events import cloudevents as ce
from .event_store import emit, membership_event, robot_event
from .gc_store import PostgresTx
from .identity import (
    TENANT_FIELDS,
    USER_FIELDS,
    AuditRecord,
    IdentityStore,
    MemberRecord,
    RefreshTokenRecord,
    RepositorySummary,
    RobotRecord,
    SigningKeyRecord,
    TagRecord,
    TenantNotEmptyError,
    TenantRecord,
    UserRecord,
)

# The tables are the SQLite schema's twins, so rows come back in the same shapes; the names
# compare bytewise in both (SQLite's default, the "C" collation here), so the tenant range
# ('<tenant>/' <= name < '<tenant>0') holds in both.
from .sqlite_identity import _REFRESH_COLUMNS, _ROBOT_COLUMNS, _USER_COLUMNS, _robot, _summary, _user
from .sqlite_identity import _tenant_range as tenant_range

_TENANT_COLUMNS = "name, display_name, quota_bytes, created_at"
_REPOSITORY_SUMMARY = (
    "SELECT r.name, r.public, "
    "(SELECT COALESCE(SUM(b.size), 0)::bigint FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
    " WHERE rb.repository_id = r.id), "
    "(SELECT count(*) FROM tags t WHERE t.repository_id = r.id), "
    "(SELECT count(*) FROM manifests m WHERE m.repository_id = r.id), "
    "r.created_at FROM repositories r ")
_SIGNING_KEYS_LOCK = "daohub.signing_keys"


def _assignments(changes: Mapping[str, object], allowed: frozenset[str], first: int) -> tuple[str, list]:
    """`a = $n, b = $n+1` for the changed columns (names checked against `allowed`) and their values."""
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    names = sorted(changes)
    return ", ".join(f"{n} = ${first + i}" for i, n in enumerate(names)), [changes[n] for n in names]


_LIVE_TOKEN = "revoked_at IS NULL AND expires_at > $1"  # a refresh token that may still be redeemed


class _LimitReached(Exception):
    def __init__(self, retry_after: float):
        super().__init__(retry_after)
        self.retry_after = retry_after


async def _revoke_tokens(conn: asyncpg.Connection, subject: str, now: float) -> int:
    return rows_affected(await conn.execute(
        f"UPDATE refresh_tokens SET revoked_at = $1 WHERE {_LIVE_TOKEN} AND subject = $2", now, subject))


async def _revoke_user_credentials(conn: asyncpg.Connection, username: str) -> None:
    """End every refresh token and web session of a user (password changed, disabled, deleted)."""
    now = time.time()
    await _revoke_tokens(conn, username, now)
    await conn.execute("UPDATE web_sessions SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL",
                       now, username)


def rows_affected(status: str) -> int:
    """Rows affected, from a command tag such as 'DELETE 1' or 'UPDATE 0'."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresIdentityMixin(IdentityStore):
    # Provided by PostgresStore.
    pool: asyncpg.Pool
    _write: Any
    _fetch: Any
    _fetchrow: Any
    _fetchval: Any

    async def _exec(self, sql: str, *args: Any) -> int:
        return rows_affected(await self.pool.execute(sql, *args))

    # Users ---------------------------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str, *, is_admin: bool = False) -> bool:
        now = time.time()
        return await self._exec(
            "INSERT INTO users (username, password_hash, is_admin, created_at, password_changed_at) "
            "VALUES ($1, $2, $3, $4, $4) ON CONFLICT (username) DO NOTHING",
            username, password_hash, int(is_admin), now) > 0

    async def get_user(self, username: str) -> UserRecord | None:
        row = await self._fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
        return _user(row) if row else None

    async def list_users(self, limit: int, after: str | None) -> list[UserRecord]:
        rows = await self._fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE username > $1 ORDER BY username LIMIT $2",
                                 after or "", limit)
        return [_user(r) for r in rows]

    async def update_user(self, username: str, changes: Mapping[str, bool]) -> UserRecord | None:
        sets, values = _assignments(changes, USER_FIELDS, 2)
        if sets:
            async def run(conn: asyncpg.Connection) -> asyncpg.Record | None:
                updated = await conn.fetchrow(f"UPDATE users SET {sets} WHERE username = $1 "
                                              f"RETURNING {_USER_COLUMNS}", username, *(int(v) for v in values))
                if updated is not None and changes.get("disabled"):
                    await _revoke_user_credentials(conn, username)
                return updated

            row = await self._write(run)
        else:
            row = await self._fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
        return _user(row) if row else None

    async def delete_user(self, username: str) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            await conn.execute("DELETE FROM refresh_tokens WHERE subject = $1", username)
            await conn.execute("DELETE FROM web_sessions WHERE username = $1", username)
            return rows_affected(await conn.execute("DELETE FROM users WHERE username = $1", username)) > 0

        return await self._write(run)

    async def count_users(self) -> int:
        return await self._fetchval("SELECT count(*) FROM users")

    async def set_password(self, username: str, password_hash: str) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            if not rows_affected(await conn.execute(
                    "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE username = $3",
                    password_hash, time.time(), username)):
                return False
            await _revoke_user_credentials(conn, username)
            return True

        return await self._write(run)

    async def memberships(self, username: str) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT t.name, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "JOIN tenants t ON t.id = m.tenant_id WHERE u.username = $1", username)
        return {r[0]: r[1] for r in rows}

    # Tenants -------------------------------------------------------------------------------
    async def create_tenant(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool:
        return await self._exec(
            "INSERT INTO tenants (name, display_name, quota_bytes, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (name) DO NOTHING", name, display_name, quota_bytes, time.time()) > 0

    async def get_tenant(self, name: str) -> TenantRecord | None:
        row = await self._fetchrow(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE name = $1", name)
        return TenantRecord(*row) if row else None

    async def list_tenants(self, limit: int, after: str | None, *,
                           only: Collection[str] | None = None) -> list[TenantRecord]:
        if only is None:
            rows = await self._fetch(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE name > $1 ORDER BY name LIMIT $2",
                                     after or "", limit)
        else:
            names = sorted(set(only))
            if not names:
                return []
            rows = await self._fetch(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE name > $1 "
                                     "AND name = ANY($3::text[]) ORDER BY name LIMIT $2", after or "", limit, names)
        return [TenantRecord(*r) for r in rows]

    async def update_tenant(self, name: str, changes: Mapping[str, object]) -> TenantRecord | None:
        sets, values = _assignments(changes, TENANT_FIELDS, 2)
        if sets:
            row = await self._fetchrow(f"UPDATE tenants SET {sets} WHERE name = $1 RETURNING {_TENANT_COLUMNS}",
                                       name, *values)
        else:
            row = await self._fetchrow(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE name = $1", name)
        return TenantRecord(*row) if row else None

    async def delete_tenant(self, name: str) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            # FOR UPDATE waits for transactions creating a repository in the tenant (they hold
            # FOR SHARE on this row); the check below then sees their repositories.
            if await conn.fetchval("SELECT id FROM tenants WHERE name = $1 FOR UPDATE", name) is None:
                return False
            low, high = tenant_range(name)
            if await conn.fetchval("SELECT 1 FROM repositories WHERE name >= $1 AND name < $2 LIMIT 1", low, high):
                raise TenantNotEmptyError(name)
            # Its webhook subscriptions go with it: a tenant made again under the name starts without them.
            await conn.execute("DELETE FROM webhook_subscriptions WHERE tenant = $1", name)
            return rows_affected(await conn.execute("DELETE FROM tenants WHERE name = $1", name)) > 0

        return await self._write(run)

    async def tenant_members(self, tenant: str, limit: int, after: str | None) -> list[MemberRecord]:
        rows = await self._fetch(
            "SELECT u.username, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "JOIN tenants t ON t.id = m.tenant_id WHERE t.name = $1 AND u.username > $2 "
            "ORDER BY u.username LIMIT $3", tenant, after or "", limit)
        return [MemberRecord(*r) for r in rows]

    async def set_membership(self, tenant: str, username: str, role: str | None) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            t = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
            u = await conn.fetchval("SELECT id FROM users WHERE username = $1", username)
            if t is None or u is None:
                return False
            before = await conn.fetchval("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2 "
                                         "FOR UPDATE", t, u)
            if role is None:
                await conn.execute("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2", t, u)
            else:
                await conn.execute(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role", t, u, role, time.time())
            event = membership_event(tenant, username, role, before)
            if event is not None:
                await emit(PostgresTx(conn), event[0], repository=None, subject=username, data=event[1],
                           tenant=tenant)
            return True

        return await self._write(run)

    # Robots --------------------------------------------------------------------------------
    async def create_robot(self, robot: RobotRecord) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            t = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", robot.tenant)
            if t is None:
                return False
            status = await conn.execute(
                "INSERT INTO robots (tenant_id, name, secret_hash, repositories, actions, expires_at, revoked, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, name) DO NOTHING",
                t, robot.name, robot.secret_hash, json.dumps(list(robot.repositories)),
                json.dumps(list(robot.actions)), robot.expires_at, int(robot.revoked), robot.created_at)
            if rows_affected(status) > 0:
                await _robot_event(conn, ce.ROBOT_CREATED, robot.tenant, robot.name, robot)
            return rows_affected(status) > 0

        return await self._write(run)

    async def get_robot(self, tenant: str, name: str) -> RobotRecord | None:
        row = await self._fetchrow(f"SELECT {_ROBOT_COLUMNS} FROM robots r JOIN tenants t ON t.id = r.tenant_id "
                                   "WHERE t.name = $1 AND r.name = $2", tenant, name)
        return _robot(row) if row else None

    async def list_robots(self, tenant: str, limit: int, after: str | None) -> list[RobotRecord]:
        rows = await self._fetch(f"SELECT {_ROBOT_COLUMNS} FROM robots r JOIN tenants t ON t.id = r.tenant_id "
                                 "WHERE t.name = $1 AND r.name > $2 ORDER BY r.name LIMIT $3",
                                 tenant, after or "", limit)
        return [_robot(r) for r in rows]

    async def revoke_robot(self, tenant: str, name: str) -> bool:
        return await self._robot_change(ce.ROBOT_REVOKED, tenant, name, "UPDATE robots SET revoked = 1 "
                                        "WHERE name = $1 AND tenant_id = (SELECT id FROM tenants WHERE name = $2)")

    async def delete_robot(self, tenant: str, name: str) -> bool:
        return await self._robot_change(ce.ROBOT_DELETED, tenant, name, "DELETE FROM robots "
                                        "WHERE name = $1 AND tenant_id = (SELECT id FROM tenants WHERE name = $2)")

    async def _robot_change(self, event_type: str, tenant: str, name: str, sql: str) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            changed = rows_affected(await conn.execute(sql, name, tenant)) > 0
            if changed:
                await _robot_event(conn, event_type, tenant, name)
            return changed

        return await self._write(run)

    # Repository visibility -------------------------------------------------------------------
    async def public_repositories(self, names: list[str]) -> set[str]:
        if not names:
            return set()
        rows = await self._fetch("SELECT name FROM repositories WHERE public = 1 AND name = ANY($1::text[])",
                                 list(names))
        return {r[0] for r in rows}

    async def set_repository_public(self, name: str, public: bool) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            await self._repo_id(conn, name, True)
            return rows_affected(await conn.execute("UPDATE repositories SET public = $1 WHERE name = $2",
                                             int(public), name)) > 0

        return await self._write(run)

    # Repository administration -------------------------------------------------------------
    async def repository_summaries(self, tenant: str, limit: int, after: str | None) -> list[RepositorySummary]:
        low, high = tenant_range(tenant)
        rows = await self._fetch(_REPOSITORY_SUMMARY + "WHERE r.name >= $1 AND r.name < $2 AND r.name > $3 "
                                 "ORDER BY r.name LIMIT $4", low, high, after or "", limit)
        return [_summary(r) for r in rows]

    async def repository_summary(self, name: str) -> RepositorySummary | None:
        row = await self._fetchrow(_REPOSITORY_SUMMARY + "WHERE r.name = $1", name)
        return _summary(row) if row else None

    async def list_tag_records(self, repository: str, limit: int, after: str | None) -> list[TagRecord] | None:
        repo_id = await self._fetchval("SELECT id FROM repositories WHERE name = $1", repository)
        if repo_id is None:
            return None
        rows = await self._fetch("SELECT name, digest, updated_at FROM tags WHERE repository_id = $1 AND name > $2 "
                                 "ORDER BY name LIMIT $3", repo_id, after or "", limit)
        return [TagRecord(*r) for r in rows]

    # Signing keys and revocation ---------------------------------------------------------------
    async def signing_keys(self) -> list[SigningKeyRecord]:
        rows = await self._fetch(
            "SELECT kid, private_pem, created_at, retired_at FROM signing_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC, kid")
        return [SigningKeyRecord(*r) for r in rows]

    async def add_signing_key(self, kid: str, private_pem: str, *, retire_older_than_rank: int | None = None) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            # Two replicas rotating at once take turns, so "keep the newest N" counts both keys.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _SIGNING_KEYS_LOCK)
            now = time.time()
            await conn.execute("INSERT INTO signing_keys (kid, private_pem, created_at) VALUES ($1, $2, $3)",
                               kid, private_pem, now)
            if retire_older_than_rank is not None:
                await conn.execute(
                    "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid NOT IN ("
                    "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT $2)",
                    now, retire_older_than_rank)

        await self._write(run)

    # Refresh tokens and web sessions ---------------------------------------------------------
    async def add_refresh_token(self, jti: str, subject: str, client_id: str, user_agent: str, issued_at: float,
                                expires_at: float) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            # Tokens past their expiry are of no use to anyone: each one issued sweeps a few.
            await conn.execute("DELETE FROM refresh_tokens WHERE jti IN (SELECT jti FROM refresh_tokens "
                               "WHERE expires_at < $1 LIMIT 100)", issued_at)
            await conn.execute("INSERT INTO refresh_tokens (jti, subject, client_id, user_agent, issued_at, "
                               "expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                               jti, subject, client_id, user_agent, issued_at, expires_at)

        await self._write(run)

    async def use_refresh_token(self, jti: str, subject: str) -> RefreshTokenRecord | None:
        now = time.time()
        row = await self._write(lambda conn: conn.fetchrow(
            f"UPDATE refresh_tokens SET last_used_at = $1 WHERE {_LIVE_TOKEN} AND jti = $2 AND subject = $3 "
            f"RETURNING {_REFRESH_COLUMNS}", now, jti, subject))
        return RefreshTokenRecord(*row) if row else None

    async def list_refresh_tokens(self, subject: str, limit: int, after: str | None) -> list[RefreshTokenRecord]:
        rows = await self._fetch(f"SELECT {_REFRESH_COLUMNS} FROM refresh_tokens WHERE {_LIVE_TOKEN} "
                                 "AND subject = $2 AND jti > $3 ORDER BY jti LIMIT $4",
                                 time.time(), subject, after or "", limit)
        return [RefreshTokenRecord(*r) for r in rows]

    async def revoke_refresh_tokens(self, subject: str, jti: str | None = None) -> int:
        if jti is None:
            return await self._write(lambda conn: _revoke_tokens(conn, subject, time.time()))
        return await self._exec(f"UPDATE refresh_tokens SET revoked_at = $1 WHERE {_LIVE_TOKEN} AND subject = $2 "
                                "AND jti = $3", time.time(), subject, jti)

    async def add_web_session(self, id_hash: str, username: str, expires_at: float) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            now = time.time()
            # Sessions past their expiry are of no use to anyone: each sign-in sweeps a few.
            await conn.execute("DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions "
                               "WHERE expires_at < $1 LIMIT 100)", now)
            await conn.execute("INSERT INTO web_sessions (id_hash, username, created_at, expires_at) "
                               "VALUES ($1, $2, $3, $4)", id_hash, username, now, expires_at)

        await self._write(run)

    async def web_session_live(self, id_hash: str, username: str) -> bool:
        return await self._fetchval("SELECT 1 FROM web_sessions WHERE id_hash = $1 AND username = $2 "
                                    "AND revoked_at IS NULL AND expires_at > $3",
                                    id_hash, username, time.time()) is not None

    async def end_web_session(self, id_hash: str) -> None:
        await self.pool.execute("UPDATE web_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
                                time.time(), id_hash)

    # Login throttling ----------------------------------------------------------------------------
    async def reserve_login_attempt(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        async def run(conn: asyncpg.Connection) -> None:
            # Each upsert counts the attempt and locks its row until the transaction ends, so
            # parallel attempts (on any replica) queue on the row and each sees the others'
            # counts; one over its limit raises, and the rollback takes back every count.
            now = time.time()
            for key, limit in limits:
                failures, start = await conn.fetchrow(
                    "INSERT INTO login_failures AS f (key, window_start, failures) VALUES ($1, $2, 1) "
                    "ON CONFLICT (key) DO UPDATE SET "
                    "window_start = CASE WHEN $2 - f.window_start >= $3 THEN $2 ELSE f.window_start END, "
                    "failures = CASE WHEN $2 - f.window_start >= $3 THEN 1 ELSE f.failures + 1 END "
                    "RETURNING failures, window_start", key, now, float(window))
                if failures > limit:
                    raise _LimitReached(start + window - now)

        try:
            await self._write(run)
        except _LimitReached as full:
            return full.retry_after
        return None

    async def release_login_attempt(self, clear: str, release: Sequence[str]) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM login_failures WHERE key = $1", clear)
            await conn.execute("UPDATE login_failures SET failures = greatest(failures - 1, 0) "
                               "WHERE key = ANY($1::text[])", list(release))

        await self._write(run)

    # Audit -------------------------------------------------------------------------------------
    async def audit(self, actor: str, action: str, target: str, detail_json: str | None = None, *,
                    tenant: str | None = None) -> None:
        await self.pool.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail, tenant) VALUES ($1, $2, $3, $4, $5, $6)",
            time.time(), actor, action, target, detail_json, tenant)

    async def audit_entries(self, limit: int, before_id: int | None, *,
                            tenants: Collection[str] | None = None) -> list[AuditRecord]:
        sql = "SELECT id, at, actor, action, target, tenant, detail FROM audit_log WHERE id < $1"
        args: list = [before_id if before_id is not None else 2 ** 63 - 1, limit]
        if tenants is not None:
            names = sorted(set(tenants))
            if not names:
                return []
            sql += " AND tenant = ANY($3::text[])"
            args.append(names)
        rows = await self._fetch(sql + " ORDER BY id DESC LIMIT $2", *args)
        return [AuditRecord(*r) for r in rows]


async def _robot_event(conn: asyncpg.Connection, event_type: str, tenant: str, name: str, robot=None) -> None:
    """A robot's event in the transaction of its change."""
    data = robot_event(event_type, tenant, name, robot)
    await emit(PostgresTx(conn), event_type, repository=None, subject=data["robot"], data=data, tenant=tenant)
