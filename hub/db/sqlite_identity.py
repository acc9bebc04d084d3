"""SQLite implementation of IdentityStore (mixed into SqliteStore)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence

from ..events import cloudevents as ce
from .event_store import emit, membership_event, robot_event
from .gc_store import drive, SqliteTx
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

_USER_COLUMNS = "username, password_hash, is_admin, disabled, created_at, password_changed_at"
_ROBOT_COLUMNS = ("t.name, r.name, r.secret_hash, r.repositories, r.actions, r.expires_at, r.revoked, "
                  "r.created_at")
_REPOSITORY_SUMMARY = (
    "SELECT r.name, r.public, "
    "(SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
    " WHERE rb.repository_id = r.id), "
    "(SELECT count(*) FROM tags t WHERE t.repository_id = r.id), "
    "(SELECT count(*) FROM manifests m WHERE m.repository_id = r.id), "
    "r.created_at FROM repositories r ")


_REFRESH_COLUMNS = "jti, subject, client_id, user_agent, issued_at, expires_at, last_used_at, revoked_at"
# A refresh token that may still be redeemed (first parameter: now).
_LIVE_TOKEN = "revoked_at IS NULL AND expires_at > ?"


def _revoke_tokens(conn: sqlite3.Connection, subject: str, now: float) -> int:
    return conn.execute(f"UPDATE refresh_tokens SET revoked_at = ? WHERE {_LIVE_TOKEN} AND subject = ?",
                        (now, now, subject)).rowcount


def _revoke_user_credentials(conn: sqlite3.Connection, username: str) -> None:
    """End every refresh token and web session of a user (password changed, disabled, deleted)."""
    now = time.time()
    _revoke_tokens(conn, username, now)
    conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
                 (now, username))


def _tenant_range(tenant: str) -> tuple[str, str]:
    # Repository names of a tenant sort between "<tenant>/" and "<tenant>0" ('0' follows '/').
    return tenant + "/", tenant + "0"


def _user(row) -> UserRecord:
    return UserRecord(row[0], row[1], bool(row[2]), bool(row[3]), row[4], row[5])


def _robot(row) -> RobotRecord:
    return RobotRecord(row[0], row[1], row[2], tuple(json.loads(row[3])), tuple(json.loads(row[4])),
                       row[5], bool(row[6]), row[7])


def _summary(row) -> RepositorySummary:
    return RepositorySummary(row[0], bool(row[1]), row[2], row[3], row[4], row[5])


def _assignments(changes: Mapping[str, object], allowed: frozenset[str]) -> tuple[str, tuple]:
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    names = sorted(changes)
    return ", ".join(f"{n} = ?" for n in names), tuple(changes[n] for n in names)


class SqliteIdentityMixin(IdentityStore):
    # Provided by SqliteStore.
    _write: object
    _one: object
    _scan: object

    # Users ---------------------------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str, *, is_admin: bool = False) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "INSERT INTO users (username, password_hash, is_admin, created_at, password_changed_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
                (username, password_hash, int(is_admin), now, now),
            )
            return cur.rowcount > 0

        return await self._write(run)

    async def get_user(self, username: str) -> UserRecord | None:
        row = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    async def list_users(self, limit: int, after: str | None) -> list[UserRecord]:
        rows = await self._scan(f"SELECT {_USER_COLUMNS} FROM users WHERE username > ? ORDER BY username LIMIT ?",
                                (after or "", limit))
        return [_user(r) for r in rows]

    async def update_user(self, username: str, changes: Mapping[str, bool]) -> UserRecord | None:
        sets, values = _assignments(changes, USER_FIELDS)

        def run(conn: sqlite3.Connection) -> UserRecord | None:
            if sets:
                conn.execute(f"UPDATE users SET {sets} WHERE username = ?",
                             (*(int(v) for v in values), username))
            if changes.get("disabled"):
                _revoke_user_credentials(conn, username)
            row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()
            return _user(row) if row else None

        return await self._write(run)

    async def delete_user(self, username: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM refresh_tokens WHERE subject = ?", (username,))
            conn.execute("DELETE FROM web_sessions WHERE username = ?", (username,))
            return conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount > 0

        return await self._write(run)

    async def count_users(self) -> int:
        return self._one("SELECT count(*) FROM users")[0]

    async def set_password(self, username: str, password_hash: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if not conn.execute("UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
                                (password_hash, time.time(), username)).rowcount:
                return False
            _revoke_user_credentials(conn, username)
            return True

        return await self._write(run)

    async def memberships(self, username: str) -> dict[str, str]:
        rows = await self._scan(
            "SELECT t.name, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "JOIN tenants t ON t.id = m.tenant_id WHERE u.username = ?", (username,))
        return {r[0]: r[1] for r in rows}

    # Tenants -------------------------------------------------------------------------------
    async def create_tenant(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool:
        return await self._write(lambda conn: conn.execute(
            "INSERT INTO tenants (name, display_name, quota_bytes, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING", (name, display_name, quota_bytes, time.time())).rowcount > 0)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        row = self._one("SELECT name, display_name, quota_bytes, created_at FROM tenants WHERE name = ?", (name,))
        return TenantRecord(*row) if row else None

    async def list_tenants(self, limit: int, after: str | None, *,
                           only: Collection[str] | None = None) -> list[TenantRecord]:
        sql = "SELECT name, display_name, quota_bytes, created_at FROM tenants WHERE name > ?"
        args: tuple = (after or "",)
        if only is not None:
            names = sorted(set(only))
            if not names:
                return []
            sql += f" AND name IN ({','.join('?' * len(names))})"
            args += tuple(names)
        rows = await self._scan(sql + " ORDER BY name LIMIT ?", (*args, limit))
        return [TenantRecord(*r) for r in rows]

    async def update_tenant(self, name: str, changes: Mapping[str, object]) -> TenantRecord | None:
        sets, values = _assignments(changes, TENANT_FIELDS)

        def run(conn: sqlite3.Connection) -> TenantRecord | None:
            if sets:
                conn.execute(f"UPDATE tenants SET {sets} WHERE name = ?", (*values, name))
            row = conn.execute("SELECT name, display_name, quota_bytes, created_at FROM tenants WHERE name = ?",
                               (name,)).fetchone()
            return TenantRecord(*row) if row else None

        return await self._write(run)

    async def delete_tenant(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone() is None:
                return False
            low, high = _tenant_range(name)
            if conn.execute("SELECT 1 FROM repositories WHERE name >= ? AND name < ? LIMIT 1",
                            (low, high)).fetchone():
                raise TenantNotEmptyError(name)
            # Its webhook subscriptions go with it: a tenant made again under the name starts without them.
            conn.execute("DELETE FROM webhook_subscriptions WHERE tenant = ?", (name,))
            return conn.execute("DELETE FROM tenants WHERE name = ?", (name,)).rowcount > 0

        return await self._write(run)

    async def tenant_members(self, tenant: str, limit: int, after: str | None) -> list[MemberRecord]:
        rows = await self._scan(
            "SELECT u.username, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "JOIN tenants t ON t.id = m.tenant_id WHERE t.name = ? AND u.username > ? "
            "ORDER BY u.username LIMIT ?", (tenant, after or "", limit))
        return [MemberRecord(*r) for r in rows]

    async def set_membership(self, tenant: str, username: str, role: str | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            t = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
            u = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if t is None or u is None:
                return False
            before = conn.execute("SELECT role FROM memberships WHERE tenant_id = ? AND user_id = ?",
                                  (t[0], u[0])).fetchone()
            if role is None:
                conn.execute("DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?", (t[0], u[0]))
            else:
                conn.execute(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
                    (t[0], u[0], role, time.time()))
            event = membership_event(tenant, username, role, before[0] if before else None)
            if event is not None:
                _tenant_event(conn, event[0], tenant, username, event[1])
            return True

        return await self._write(run)

    # Robots --------------------------------------------------------------------------------
    async def create_robot(self, robot: RobotRecord) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            t = conn.execute("SELECT id FROM tenants WHERE name = ?", (robot.tenant,)).fetchone()
            if t is None:
                return False
            cur = conn.execute(
                "INSERT INTO robots (tenant_id, name, secret_hash, repositories, actions, expires_at, revoked, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO NOTHING",
                (t[0], robot.name, robot.secret_hash, json.dumps(list(robot.repositories)),
                 json.dumps(list(robot.actions)), robot.expires_at, int(robot.revoked), robot.created_at))
            if cur.rowcount > 0:
                _robot_event(conn, ce.ROBOT_CREATED, robot.tenant, robot.name, robot)
            return cur.rowcount > 0

        return await self._write(run)

    async def get_robot(self, tenant: str, name: str) -> RobotRecord | None:
        row = self._one(f"SELECT {_ROBOT_COLUMNS} FROM robots r JOIN tenants t ON t.id = r.tenant_id "
                        "WHERE t.name = ? AND r.name = ?", (tenant, name))
        return _robot(row) if row else None

    async def list_robots(self, tenant: str, limit: int, after: str | None) -> list[RobotRecord]:
        rows = await self._scan(f"SELECT {_ROBOT_COLUMNS} FROM robots r JOIN tenants t ON t.id = r.tenant_id "
                                "WHERE t.name = ? AND r.name > ? ORDER BY r.name LIMIT ?",
                                (tenant, after or "", limit))
        return [_robot(r) for r in rows]

    async def revoke_robot(self, tenant: str, name: str) -> bool:
        return await self._robot_change(ce.ROBOT_REVOKED, tenant, name, "UPDATE robots SET revoked = 1 WHERE name = ? "
                                        "AND tenant_id = (SELECT id FROM tenants WHERE name = ?)")

    async def delete_robot(self, tenant: str, name: str) -> bool:
        return await self._robot_change(ce.ROBOT_DELETED, tenant, name, "DELETE FROM robots WHERE name = ? "
                                        "AND tenant_id = (SELECT id FROM tenants WHERE name = ?)")

    async def _robot_change(self, event_type: str, tenant: str, name: str, sql: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(sql, (name, tenant)).rowcount > 0
            if changed:
                _robot_event(conn, event_type, tenant, name)
            return changed

        return await self._write(run)

    # Repository visibility -------------------------------------------------------------------
    async def public_repositories(self, names: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(names), 500):
            batch = names[i:i + 500]
            marks = ",".join("?" * len(batch))
            for (name,) in await self._scan(
                    f"SELECT name FROM repositories WHERE public = 1 AND name IN ({marks})", tuple(batch)):
                found.add(name)
        return found

    async def set_repository_public(self, name: str, public: bool) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                         (name, time.time()))
            return conn.execute("UPDATE repositories SET public = ? WHERE name = ?",
                                (int(public), name)).rowcount > 0

        return await self._write(run)

    # Repository administration -------------------------------------------------------------
    async def repository_summaries(self, tenant: str, limit: int, after: str | None) -> list[RepositorySummary]:
        low, high = _tenant_range(tenant)
        rows = await self._scan(_REPOSITORY_SUMMARY + "WHERE r.name >= ? AND r.name < ? AND r.name > ? "
                                "ORDER BY r.name LIMIT ?", (low, high, after or "", limit))
        return [_summary(r) for r in rows]

    async def repository_summary(self, name: str) -> RepositorySummary | None:
        rows = await self._scan(_REPOSITORY_SUMMARY + "WHERE r.name = ?", (name,))
        return _summary(rows[0]) if rows else None

    async def list_tag_records(self, repository: str, limit: int, after: str | None) -> list[TagRecord] | None:
        row = self._one("SELECT id FROM repositories WHERE name = ?", (repository,))
        if row is None:
            return None
        rows = await self._scan("SELECT name, digest, updated_at FROM tags WHERE repository_id = ? AND name > ? "
                                "ORDER BY name LIMIT ?", (row[0], after or "", limit))
        return [TagRecord(*r) for r in rows]

    # Signing keys and revocation ---------------------------------------------------------------
    async def signing_keys(self) -> list[SigningKeyRecord]:
        rows = await self._scan(
            "SELECT kid, private_pem, created_at, retired_at FROM signing_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC, kid")
        return [SigningKeyRecord(*r) for r in rows]

    async def add_signing_key(self, kid: str, private_pem: str, *, retire_older_than_rank: int | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("INSERT INTO signing_keys (kid, private_pem, created_at) VALUES (?, ?, ?)",
                         (kid, private_pem, now))
            if retire_older_than_rank is not None:
                keep = [r[0] for r in conn.execute(
                    "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT ?",
                    (retire_older_than_rank,))]
                marks = ",".join("?" * len(keep))
                conn.execute(f"UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL "
                             f"AND kid NOT IN ({marks})", (now, *keep))

        await self._write(run)

    # Refresh tokens and web sessions ---------------------------------------------------------
    async def add_refresh_token(self, jti: str, subject: str, client_id: str, user_agent: str, issued_at: float,
                                expires_at: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # Tokens past their expiry are of no use to anyone: each one issued sweeps a few.
            conn.execute("DELETE FROM refresh_tokens WHERE jti IN (SELECT jti FROM refresh_tokens "
                         "WHERE expires_at < ? LIMIT 100)", (issued_at,))
            conn.execute("INSERT INTO refresh_tokens (jti, subject, client_id, user_agent, issued_at, expires_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (jti, subject, client_id, user_agent, issued_at, expires_at))

        await self._write(run)

    async def use_refresh_token(self, jti: str, subject: str) -> RefreshTokenRecord | None:
        def run(conn: sqlite3.Connection) -> RefreshTokenRecord | None:
            now = time.time()
            row = conn.execute(f"UPDATE refresh_tokens SET last_used_at = ? WHERE {_LIVE_TOKEN} AND jti = ? "
                               f"AND subject = ? RETURNING {_REFRESH_COLUMNS}", (now, now, jti, subject)).fetchone()
            return RefreshTokenRecord(*row) if row else None

        return await self._write(run)

    async def list_refresh_tokens(self, subject: str, limit: int, after: str | None) -> list[RefreshTokenRecord]:
        rows = await self._scan(f"SELECT {_REFRESH_COLUMNS} FROM refresh_tokens WHERE {_LIVE_TOKEN} "
                                "AND subject = ? AND jti > ? ORDER BY jti LIMIT ?",
                                (time.time(), subject, after or "", limit))
        return [RefreshTokenRecord(*r) for r in rows]

    async def revoke_refresh_tokens(self, subject: str, jti: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = time.time()
            if jti is None:
                return _revoke_tokens(conn, subject, now)
            return conn.execute(f"UPDATE refresh_tokens SET revoked_at = ? WHERE {_LIVE_TOKEN} AND subject = ? "
                                "AND jti = ?", (now, now, subject, jti)).rowcount

        return await self._write(run)

    async def add_web_session(self, id_hash: str, username: str, expires_at: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            now = time.time()
            # Sessions past their expiry are of no use to anyone: each sign-in sweeps a few.
            conn.execute("DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions "
                         "WHERE expires_at < ? LIMIT 100)", (now,))
            conn.execute("INSERT INTO web_sessions (id_hash, username, created_at, expires_at) VALUES (?, ?, ?, ?)",
                         (id_hash, username, now, expires_at))

        await self._write(run)

    async def web_session_live(self, id_hash: str, username: str) -> bool:
        return self._one("SELECT 1 FROM web_sessions WHERE id_hash = ? AND username = ? AND revoked_at IS NULL "
                         "AND expires_at > ?", (id_hash, username, time.time())) is not None

    async def end_web_session(self, id_hash: str) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE web_sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
            (time.time(), id_hash)))

    # Login throttling ----------------------------------------------------------------------------
    async def reserve_login_attempt(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            # One write transaction (SQLite has a single writer): read, decide and count at once.
            now = time.time()
            rows = []
            for key, limit in limits:
                row = conn.execute("SELECT window_start, failures FROM login_failures WHERE key = ?",
                                   (key,)).fetchone()
                if row is not None and now - row[0] < window:
                    if row[1] >= limit:
                        return row[0] + window - now
                    rows.append((key, row[0], row[1] + 1))
                else:
                    rows.append((key, now, 1))
            conn.executemany("INSERT INTO login_failures (key, window_start, failures) VALUES (?, ?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, "
                             "failures = excluded.failures", rows)
            return None

        return await self._write(run)

    async def release_login_attempt(self, clear: str, release: Sequence[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM login_failures WHERE key = ?", (clear,))
            conn.executemany("UPDATE login_failures SET failures = max(failures - 1, 0) WHERE key = ?",
                             [(key,) for key in release])

        await self._write(run)

    # Audit -------------------------------------------------------------------------------------
    async def audit(self, actor: str, action: str, target: str, detail_json: str | None = None, *,
                    tenant: str | None = None) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail, tenant) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, detail_json, tenant)))

    async def audit_entries(self, limit: int, before_id: int | None, *,
                            tenants: Collection[str] | None = None) -> list[AuditRecord]:
        sql = "SELECT id, at, actor, action, target, tenant, detail FROM audit_log WHERE id < ?"
        args: tuple = (before_id if before_id is not None else 2 ** 63 - 1,)
        if tenants is not None:
            names = sorted(set(tenants))
            if not names:
                return []
            sql += f" AND tenant IN ({','.join('?' * len(names))})"
            args += tuple(names)
        rows = await self._scan(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditRecord(*r) for r in rows]


def _tenant_event(conn: sqlite3.Connection, event_type: str, tenant: str, subject: str, data: dict) -> None:
    """A tenant's event (members, robots) in the writer's open transaction."""
    drive(emit(SqliteTx(conn), event_type, repository=None, subject=subject, data=data, tenant=tenant))


def _robot_event(conn: sqlite3.Connection, event_type: str, tenant: str, name: str, robot=None) -> None:
    data = robot_event(event_type, tenant, name, robot)
    _tenant_event(conn, event_type, tenant, data["robot"], data)
