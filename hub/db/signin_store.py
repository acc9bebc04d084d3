"""Sign-in state of the identity area (migration 0014, docs/sign-in.md): what an identity
provider said of each account it vouches for, personal CLI secrets, pending OpenID Connect
browser sign-ins, and the identity providers made through the admin API.

One mixin for both dialects: the SQL is written once with `$n` parameters; writes run in one
transaction through the store's `_gc_tx` (gc_store's dialect-neutral transaction), reads go to
the dialect's reader. Every change that the audit log records is audited in its own transaction.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any

MAX_CLI_SECRETS = 20  # per user


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderAccountRecord:
    username: str
    provider: str
    subject: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    signed_in_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class CliSecretRecord:
    id: str
    username: str
    name: str
    secret_hash: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class LoginStateRecord:
    state_hash: str
    provider: str
    nonce: str
    code_verifier: str
    binding: str
    next_path: str
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class StoredProviderRecord:
    name: str
    type: str
    settings: dict  # the provider's settings without its secret
    secret: str     # client secret or bind password, as given (never shown)
    created_at: float
    updated_at: float

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"StoredProviderRecord(name={self.name!r}, type={self.type!r}, secret='***')"


class SignInOutcome:
    PROVISIONED = "provisioned"  # a new account
    SIGNED_IN = "signed_in"      # the account the provider provisioned earlier
    TAKEN = "taken"              # the name is a local account's, another provider's or another subject's
    DISABLED = "disabled"


_ACCOUNT = "username, provider, subject, display_name, email, groups, signed_in_at"
_SECRET = "id, username, name, secret_hash, created_at, expires_at, last_used_at"
_STATE = "state_hash, provider, nonce, code_verifier, binding, next_path, expires_at"
_PROVIDER = "name, type, settings, secret, created_at, updated_at"
_AUDIT = "INSERT INTO audit_log (at, actor, action, target, detail, tenant) VALUES ($1, $2, $3, $4, $5, NULL)"
_BUMP = ("INSERT INTO identity_providers_version (id, version) VALUES (1, 1) "
         "ON CONFLICT (id) DO UPDATE SET version = identity_providers_version.version + 1")


def _account(row) -> ProviderAccountRecord:
    return ProviderAccountRecord(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6])


def _secret(row) -> CliSecretRecord:
    return CliSecretRecord(*row)


def _provider(row) -> StoredProviderRecord:
    return StoredProviderRecord(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


async def _audit(tx, actor: str, action: str, target: str, detail: dict | None) -> None:
    await tx.execute(_AUDIT, time.time(), actor, action, target,
                     None if detail is None else json.dumps(detail, sort_keys=True))


class SignInStoreMixin:
    """Mixed into SqliteStore and PostgresStore (which provide `dialect`, `_gc_tx` and readers)."""

    dialect: str

    async def _signin_read(self, sql: str, *args: Any, many: bool = False) -> Any:
        if self.dialect == "sqlite":
            sql = re.sub(r"\$(\d+)", r"?\1", sql)
            if many:
                return await self._scan(sql, args)  # type: ignore[attr-defined]
            return self._one(sql, args)  # type: ignore[attr-defined]
        if many:
            return await self._fetch(sql, *args)  # type: ignore[attr-defined]
        return await self._fetchrow(sql, *args)  # type: ignore[attr-defined]

    # Provider accounts ---------------------------------------------------------------------------
    async def record_provider_sign_in(self, username: str, password_hash: str, provider: str, subject: str,
                                      display_name: str, email: str, groups: list[str]) -> str:
        """Record that `provider` signed `subject` in as `username`, with these groups: the
        account is made (its `users` row with `password_hash`, and an audit row) if the name is
        free; a name held by a local account, another provider or another subject is TAKEN."""
        async def run(tx) -> str:
            now = time.time()
            user = await tx.fetchrow("SELECT password_hash, disabled FROM users WHERE username = $1", username)
            held = await tx.fetchrow("SELECT username FROM provider_accounts WHERE provider = $1 AND subject = $2",
                                     provider, subject)
            if held is not None and held[0] != username:
                return SignInOutcome.TAKEN  # this subject is another DaoHub account already
            outcome = SignInOutcome.SIGNED_IN
            if user is None:
                await tx.execute("INSERT INTO users (username, password_hash, is_admin, created_at, "
                                 "password_changed_at) VALUES ($1, $2, 0, $3, $3)", username, password_hash, now)
                await _audit(tx, username, "user.provision", username,
                             {"provider": provider, "display_name": display_name[:200], "email": email[:200]})
                outcome = SignInOutcome.PROVISIONED
            elif user[0] != password_hash:
                return SignInOutcome.TAKEN
            else:
                row = await tx.fetchrow("SELECT subject FROM provider_accounts WHERE username = $1", username)
                if row is not None and row[0] != subject:
                    return SignInOutcome.TAKEN
                if user[1]:
                    return SignInOutcome.DISABLED
            await tx.execute(
                f"INSERT INTO provider_accounts ({_ACCOUNT}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name, "
                "email = excluded.email, groups = excluded.groups, signed_in_at = excluded.signed_in_at",
                username, provider, subject, display_name[:200], email[:200], json.dumps(sorted(set(groups))), now)
            return outcome

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    async def provider_account(self, username: str) -> ProviderAccountRecord | None:
        row = await self._signin_read(f"SELECT {_ACCOUNT} FROM provider_accounts WHERE username = $1", username)
        return _account(row) if row else None

    # CLI secrets ------------------------------------------------------------------------------------
    async def create_cli_secret(self, secret_id: str, username: str, name: str, secret_hash: str,
                                created_at: float, expires_at: float | None, actor: str) -> bool:
        """Store a new secret (by its hash) with its audit row; False past MAX_CLI_SECRETS."""
        record = CliSecretRecord(secret_id, username, name, secret_hash, created_at, expires_at, None)

        async def run(tx) -> bool:
            count = await tx.fetchval("SELECT count(*) FROM cli_secrets WHERE username = $1", record.username)
            if count >= MAX_CLI_SECRETS:
                return False
            await tx.execute(f"INSERT INTO cli_secrets ({_SECRET}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                             record.id, record.username, record.name, record.secret_hash, record.created_at,
                             record.expires_at, None)
            await _audit(tx, actor, "user.cli_secret.create", record.username,
                         {"id": record.id, "name": record.name, "expires_at": record.expires_at})
            return True

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    async def cli_secrets(self, username: str) -> list[CliSecretRecord]:
        rows = await self._signin_read(f"SELECT {_SECRET} FROM cli_secrets WHERE username = $1 ORDER BY id",
                                       username, many=True)
        return [_secret(r) for r in rows]

    async def get_cli_secret(self, secret_id: str) -> CliSecretRecord | None:
        row = await self._signin_read(f"SELECT {_SECRET} FROM cli_secrets WHERE id = $1", secret_id)
        return _secret(row) if row else None

    async def delete_cli_secret(self, username: str, secret_id: str, actor: str) -> bool:
        async def run(tx) -> bool:
            if not await tx.execute("DELETE FROM cli_secrets WHERE username = $1 AND id = $2", username, secret_id):
                return False
            await _audit(tx, actor, "user.cli_secret.delete", username, {"id": secret_id})
            return True

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    async def touch_cli_secret(self, secret_id: str, at: float) -> None:
        """Note a use, at most once a minute per secret (a token request each pull must not be a write)."""
        await self._gc_tx(lambda tx: tx.execute(  # type: ignore[attr-defined]
            "UPDATE cli_secrets SET last_used_at = $2 WHERE id = $1 AND "
            "(last_used_at IS NULL OR last_used_at < $3)", secret_id, at, at - 60))

    # Browser sign-ins in flight -------------------------------------------------------------------------
    async def add_login_state(self, state_hash: str, provider: str, nonce: str, code_verifier: str, binding: str,
                              next_path: str, expires_at: float) -> None:
        record = LoginStateRecord(state_hash, provider, nonce, code_verifier, binding, next_path, expires_at)

        async def run(tx) -> None:
            # Sign-ins abandoned past their expiry go, a few at a time.
            await tx.execute("DELETE FROM oidc_login_states WHERE state_hash IN (SELECT state_hash FROM "
                             "oidc_login_states WHERE expires_at < $1 LIMIT 100)", time.time())
            await tx.execute(f"INSERT INTO oidc_login_states ({_STATE}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                             *dataclasses.astuple(record))

        await self._gc_tx(run)  # type: ignore[attr-defined]

    async def take_login_state(self, state_hash: str) -> LoginStateRecord | None:
        """The pending sign-in of this state, deleted as it is read (a state works once); None if
        there is none or it expired."""
        async def run(tx) -> LoginStateRecord | None:
            row = await tx.fetchrow(f"SELECT {_STATE} FROM oidc_login_states WHERE state_hash = $1", state_hash)
            if row is None or not await tx.execute("DELETE FROM oidc_login_states WHERE state_hash = $1",
                                                   state_hash):
                return None
            record = LoginStateRecord(*row)
            return record if record.expires_at > time.time() else None

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    # Identity providers of the admin API ------------------------------------------------------------------
    async def stored_identity_providers(self) -> list[StoredProviderRecord]:
        rows = await self._signin_read(f"SELECT {_PROVIDER} FROM identity_providers ORDER BY name", many=True)
        return [_provider(r) for r in rows]

    async def identity_providers_version(self) -> int:
        row = await self._signin_read("SELECT version FROM identity_providers_version WHERE id = 1")
        return row[0] if row else 0

    async def create_identity_provider(self, name: str, type_: str, settings: dict, secret: str, actor: str,
                                       detail: dict) -> bool:
        async def run(tx) -> bool:
            now = time.time()
            if await tx.fetchrow("SELECT 1 FROM identity_providers WHERE name = $1", name):
                return False
            await tx.execute(f"INSERT INTO identity_providers ({_PROVIDER}) VALUES ($1, $2, $3, $4, $5, $5)",
                             name, type_, json.dumps(settings, sort_keys=True), secret, now)
            await tx.execute(_BUMP)
            await _audit(tx, actor, "identity_provider.create", name, detail)
            return True

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    async def update_identity_provider(self, name: str, settings: dict, secret: str, actor: str,
                                       detail: dict) -> bool:
        async def run(tx) -> bool:
            if not await tx.execute("UPDATE identity_providers SET settings = $2, secret = $3, updated_at = $4 "
                                    "WHERE name = $1", name, json.dumps(settings, sort_keys=True), secret,
                                    time.time()):
                return False
            await tx.execute(_BUMP)
            await _audit(tx, actor, "identity_provider.update", name, detail)
            return True

        return await self._gc_tx(run)  # type: ignore[attr-defined]

    async def delete_identity_provider(self, name: str, actor: str) -> bool:
        async def run(tx) -> bool:
            if not await tx.execute("DELETE FROM identity_providers WHERE name = $1", name):
                return False
            await tx.execute(_BUMP)
            await _audit(tx, actor, "identity_provider.delete", name, None)
            return True

        return await self._gc_tx(run)  # type: ignore[attr-defined]
