"""Authentication and token issuance over the identity store: no HTTP here.

Who is asking (Basic credentials of a user or robot, a refresh token, nobody), what they
may do (auth.policy), and the signed token that says so (auth.tokens). Failed logins are
throttled through the store, so every replica sees the same count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .keys import KeyRing, SigningKey
from .passwords import DEFAULT_PARAMS, Argon2Params, hash_password, verify_password, verify_secret
from .policy import (
    CacheAccess,
    Principal,
    RepositoryInfo,
    RobotGrant,
    grant,
    requested_repository_names,
    tenant_of,
)
from .scopes import ResourceScope, parse_scopes
from .tokens import InvalidToken, IssuedToken, TokenIssuer, TokenVerifier, VerifiedToken

log = logging.getLogger("daohub.auth")

# A token signed with a key this replica does not know (another replica rotated) reloads the
# key ring from the store before it is refused, at most this often: tokens with made-up kids
# must not turn into a query each.
UNKNOWN_KID_RELOAD_INTERVAL = 5.0

ROBOT_PREFIX = "robot$"


class AuthenticationFailed(Exception):
    """Wrong credentials (the message is safe to show)."""


class LoginThrottled(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins; retry in {int(retry_after) + 1}s")
        self.retry_after = int(retry_after) + 1


def robot_account(tenant: str, name: str) -> str:
    """The login name of a robot: robot$<tenant>+<name> (Harbor's convention)."""
    return f"{ROBOT_PREFIX}{tenant}+{name}"


def parse_robot_account(account: str) -> tuple[str, str] | None:
    if not account.startswith(ROBOT_PREFIX) or "+" not in account:
        return None
    tenant, _, name = account[len(ROBOT_PREFIX):].partition("+")
    return (tenant, name) if tenant and name else None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    issuer: str
    service: str
    token_ttl: int = 300
    refresh_ttl: int = 30 * 24 * 3600
    keep_previous_keys: int = 2
    login_failure_limit: int = 10
    login_failure_window: float = 300.0
    password_params: Argon2Params = DEFAULT_PARAMS


class AuthService:
    def __init__(self, store, settings: AuthSettings):
        self.store = store
        self.settings = settings
        self._ring: KeyRing | None = None
        self._ring_loaded = 0.0
        self.issuer = TokenIssuer(self._current_ring, settings.issuer, settings.service)
        self.verifier = TokenVerifier(self._current_ring, settings.issuer, settings.service)
        self._reload_lock = asyncio.Lock()
        self._unknown_kid_reload: float | None = None  # monotonic time of the last one
        self.key_reloads = 0
        # argon2id costs ~64 MiB and ~0.1 s of CPU per check: run it off the event loop, and
        # only two at a time, so a login storm bounds memory instead of multiplying it.
        self._kdf_slots = asyncio.Semaphore(2)
        # Set by the pull-through cache: name -> the CacheAccess of the namespace it reaches
        # (without a containerd ?ns=, which the token endpoint never sees), or None.
        self.cache_access: Callable[[str], Awaitable[CacheAccess | None]] | None = None

    async def _kdf(self, fn, *args):
        async with self._kdf_slots:
            return await asyncio.to_thread(fn, *args)

    # Keys -----------------------------------------------------------------------------------
    def _current_ring(self) -> KeyRing:
        if self._ring is None:
            raise RuntimeError("signing keys not loaded")
        return self._ring

    async def load_keys(self) -> KeyRing:
        """Load the key ring from the store; generate the first key if there is none."""
        records = await self.store.signing_keys()
        if not records:
            key = SigningKey.generate()
            await self.store.add_signing_key(key.kid, key.to_pem().decode())
            log.info("generated the first token signing key %s", key.kid)
            records = await self.store.signing_keys()
        keys = [SigningKey.from_pem(r.private_pem, datetime.fromtimestamp(r.created_at, UTC)) for r in records]
        self._ring = KeyRing(keys[0], tuple(keys[1:self.settings.keep_previous_keys + 1]),
                             max_previous=self.settings.keep_previous_keys)
        self._ring_loaded = time.monotonic()
        self.key_reloads += 1
        return self._ring

    async def rotate_keys(self) -> str:
        key = SigningKey.generate()
        await self.store.add_signing_key(key.kid, key.to_pem().decode(),
                                         retire_older_than_rank=self.settings.keep_previous_keys + 1)
        await self.load_keys()
        return key.kid

    async def refresh_keys_if_stale(self, max_age: float = 60.0) -> None:
        """Pick up rotations made by other replicas."""
        if time.monotonic() - self._ring_loaded > max_age:
            async with self._reload_lock:
                if time.monotonic() - self._ring_loaded > max_age:
                    await self.load_keys()

    async def _reload_for_unknown_kid(self) -> bool:
        """Reload the ring for a token with an unknown kid; False if one was done too recently."""
        async with self._reload_lock:
            last = self._unknown_kid_reload
            if last is not None and time.monotonic() - last < UNKNOWN_KID_RELOAD_INTERVAL:
                return False
            self._unknown_kid_reload = time.monotonic()
            await self.load_keys()
            return True

    # Bootstrap ---------------------------------------------------------------------------------
    async def ensure_admin(self, password: str | None) -> str | None:
        """Create the platform admin `admin` if there are no users; return a generated password."""
        if await self.store.count_users():
            return None
        generated = None
        if not password:
            from .passwords import generate_secret

            password = generated = generate_secret(18)
        hashed = await self._kdf(hash_password, password, self.settings.password_params)
        created = await self.store.create_user("admin", hashed, is_admin=True)
        return generated if created else None

    # Principals ----------------------------------------------------------------------------------
    async def principal_for_subject(self, subject: str) -> Principal:
        """Rebuild the principal a token was issued to (for catalog filtering and refresh)."""
        robot = parse_robot_account(subject)
        if robot is not None:
            record = await self.store.get_robot(*robot)
            if record is None:
                return Principal.anonymous()
            return Principal.for_robot(subject, _robot_grant(record))
        if not subject:
            return Principal.anonymous()
        user = await self.store.get_user(subject)
        if user is None or user.disabled:
            return Principal.anonymous()
        return Principal.user(subject, await self.store.memberships(subject), is_platform_admin=user.is_admin)

    async def authenticate(self, account: str, secret: str, remote: str) -> Principal:
        """Check Basic credentials of a user or robot. Throttles repeated failures."""
        keys = (f"user:{account}", f"ip:{remote}")
        for key in keys:
            failures, retry_after = await self.store.login_failures(key, self.settings.login_failure_window)
            if failures >= self.settings.login_failure_limit:
                raise LoginThrottled(retry_after)
        principal = await self._check_credentials(account, secret)
        if principal is None:
            for key in keys:
                await self.store.record_login_failure(key, self.settings.login_failure_window)
            log.info("failed login for %r from %s", account[:100], remote)
            raise AuthenticationFailed("invalid username or password")
        return principal

    async def _check_credentials(self, account: str, secret: str) -> Principal | None:
        robot = parse_robot_account(account)
        now = datetime.now(UTC)
        if robot is not None:
            record = await self.store.get_robot(*robot)
            if record is None or not verify_secret(record.secret_hash, secret):
                return None
            principal = Principal.for_robot(account, _robot_grant(record))
            return principal if principal.is_active(now) else None
        user = await self.store.get_user(account)
        if user is None:
            # Spend the same time as a real check, so timing does not reveal which users exist.
            await self._kdf(verify_password, _DUMMY_HASH.get(self.settings.password_params), secret,
                            self.settings.password_params)
            return None
        ok = await self._kdf(verify_password, user.password_hash, secret, self.settings.password_params)
        if user.disabled or not ok:
            return None
        return Principal.user(account, await self.store.memberships(account), is_platform_admin=user.is_admin)

    # Tokens ---------------------------------------------------------------------------------------
    async def grant(self, principal: Principal, raw_scopes: list[str]) -> list[ResourceScope]:
        requested = parse_scopes(raw_scopes)
        names = requested_repository_names(requested)
        public = await self.store.public_repositories(names) if names else set()
        repos = {}
        for n in names:
            cache = await self.cache_access(n) if self.cache_access is not None else None
            repos[n] = RepositoryInfo(n, tenant_of(n), n in public, cache)
        return grant(principal, requested, repos.get, datetime.now(UTC))

    async def issue(self, principal: Principal, raw_scopes: list[str], *, offline: bool = False,
                    client_id: str = "") -> tuple[IssuedToken, str | None]:
        await self.refresh_keys_if_stale()  # sign with the key other replicas rotated to
        access = await self.grant(principal, raw_scopes)
        issued = self.issuer.issue(principal.name, access, self.settings.token_ttl)
        refresh = None
        if offline and principal.name:
            refresh = self.issuer.issue_refresh_token(principal.name, client_id or "daohub",
                                                      self.settings.refresh_ttl)
        await self.store.audit(principal.name or "anonymous", "token.issue", principal.name or "-",
                               json.dumps({"scopes": [str(s) for s in access]}))
        return issued, refresh

    async def redeem_refresh_token(self, token: str, client_id: str) -> Principal:
        try:
            verified = self.verifier.verify_refresh_token(token, client_id=client_id)
        except InvalidToken as exc:
            if exc.reason != "unknown kid" or not await self._reload_for_unknown_kid():
                raise
            verified = self.verifier.verify_refresh_token(token, client_id=client_id)
        if await self.store.is_token_revoked(verified.jti):
            raise InvalidToken("refresh token revoked")
        principal = await self.principal_for_subject(verified.subject)
        if not principal.is_authenticated(datetime.now(UTC)):
            raise InvalidToken("account no longer active")
        return principal

    async def hash_password(self, password: str) -> str:
        return await self._kdf(hash_password, password, self.settings.password_params)

    async def revoke_refresh_token(self, token: str) -> None:
        verified = self.verifier.verify_refresh_token(token)
        await self.store.revoke_token(verified.jti, verified.expires_at)

    async def verify(self, token: str) -> VerifiedToken:
        """Verify an access token (cached, no I/O), reloading keys once for a kid another replica made."""
        try:
            return self.verifier.verify(token)
        except InvalidToken as exc:
            if exc.reason != "unknown kid" or not await self._reload_for_unknown_kid():
                raise
        return self.verifier.verify(token)

    def verifier_keyring(self) -> KeyRing:
        return self._current_ring()


def _robot_grant(record) -> RobotGrant:
    expires = datetime.fromtimestamp(record.expires_at, UTC) if record.expires_at else None
    return RobotGrant(record.tenant, tuple(record.repositories), frozenset(record.actions), expires,
                      record.revoked)


class _DummyHashes:
    """One throwaway hash per parameter set, made on first use."""

    def __init__(self) -> None:
        self._hashes: dict[Argon2Params, str] = {}

    def get(self, params: Argon2Params) -> str:
        if params not in self._hashes:
            self._hashes[params] = hash_password("not a real password", params)
        return self._hashes[params]


_DUMMY_HASH = _DummyHashes()
