"""SQLite implementation of IdentityStore (mixed into SqliteStore)."""

from __future__ import annotations

import json
import sqlite3
import time

from .identity import IdentityStore, RobotRecord, SigningKeyRecord, TenantRecord, UserRecord


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
        row = self._one(
            "SELECT username, password_hash, is_admin, disabled, created_at, password_changed_at "
            "FROM users WHERE username = ?", (username,))
        if row is None:
            return None
        return UserRecord(row[0], row[1], bool(row[2]), bool(row[3]), row[4], row[5])

    async def count_users(self) -> int:
        return self._one("SELECT count(*) FROM users")[0]

    async def set_password(self, username: str, password_hash: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
            (password_hash, time.time(), username)).rowcount > 0)

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

    async def set_membership(self, tenant: str, username: str, role: str | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            t = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
            u = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if t is None or u is None:
                return False
            if role is None:
                conn.execute("DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?", (t[0], u[0]))
            else:
                conn.execute(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
                    (t[0], u[0], role, time.time()))
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
            return cur.rowcount > 0

        return await self._write(run)

    async def get_robot(self, tenant: str, name: str) -> RobotRecord | None:
        row = self._one(
            "SELECT t.name, r.name, r.secret_hash, r.repositories, r.actions, r.expires_at, r.revoked, r.created_at "
            "FROM robots r JOIN tenants t ON t.id = r.tenant_id WHERE t.name = ? AND r.name = ?", (tenant, name))
        if row is None:
            return None
        return RobotRecord(row[0], row[1], row[2], tuple(json.loads(row[3])), tuple(json.loads(row[4])),
                           row[5], bool(row[6]), row[7])

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

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO revoked_tokens (jti, revoked_at, expires_at) VALUES (?, ?, ?) ON CONFLICT (jti) DO NOTHING",
            (jti, time.time(), expires_at)))

    async def is_token_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)) is not None

    # Login throttling ----------------------------------------------------------------------------
    async def record_login_failure(self, key: str, window: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = time.time()
            row = conn.execute("SELECT window_start, failures FROM login_failures WHERE key = ?", (key,)).fetchone()
            if row is None or now - row[0] >= window:
                conn.execute("INSERT INTO login_failures (key, window_start, failures) VALUES (?, ?, 1) "
                             "ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, failures = 1",
                             (key, now))
                return 1
            conn.execute("UPDATE login_failures SET failures = failures + 1 WHERE key = ?", (key,))
            return row[1] + 1

        return await self._write(run)

    async def login_failures(self, key: str, window: float) -> tuple[int, float]:
        row = self._one("SELECT window_start, failures FROM login_failures WHERE key = ?", (key,))
        if row is None:
            return 0, 0.0
        remaining = row[0] + window - time.time()
        return (row[1], remaining) if remaining > 0 else (0, 0.0)

    async def clear_login_failures(self, key: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM login_failures WHERE key = ?", (key,)))

    # Audit -------------------------------------------------------------------------------------
    async def audit(self, actor: str, action: str, target: str, detail_json: str | None = None) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, detail_json)))
