"""Authentication and token issuance over the identity store: no HTTP here.

Who is asking (Basic credentials of a user or robot, a refresh token, nobody), what they
may do (auth.policy), and the signed token that says so (auth.tokens). Failed logins are
throttled through the store, so every replica sees the same count.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .keys import KeyRing, SigningKey
from .passwords import (
    DEFAULT_PARAMS,
    Argon2Params,
    generate_secret,
    hash_password,
    hash_secret,
    verify_password,
    verify_secret,
)
from .policy import (
    CacheAccess,
    Principal,
    RepositoryInfo,
    RobotGrant,
    Role,
    grant,
    requested_repository_names,
    tenant_of,
)
from .provider_settings import NAME_RE, check_providers, spec_from_json
from .providers import (
    Directory,
    IdentityProvider,
    build_providers,
    DirectoryAccount,
    ProviderUnavailable,
    mapped_roles,
    merge_memberships,
    provider_hash,
    provider_of,
)
from .scopes import ResourceScope, parse_scopes
from .tokens import InvalidToken, IssuedToken, TokenIssuer, TokenVerifier, VerifiedToken

log = logging.getLogger("daohub.auth")

# A token signed with a key this replica does not know (another replica rotated) reloads the
# key ring from the store before it is refused, at most this often: tokens with made-up kids
# must not turn into a query each.
UNKNOWN_KID_RELOAD_INTERVAL = 5.0

ROBOT_PREFIX = "robot$"
CLI_SECRET_PREFIX = "dhcli_"  # dhcli_<id>_<secret>: the id finds the row, the whole string is hashed
OIDC_SIGN_IN_SECONDS = 600  # from the redirect to the provider to its callback
PROVIDER_REFRESH_SECONDS = 2.0  # how often a replica asks whether the admin API changed the providers
DIRECTORY_LOGIN_SLOTS = 8  # directory sign-ins checked at once per process
MAX_USER_AGENT = 300  # characters of a client's User-Agent kept with its refresh token


class AuthenticationFailed(Exception):
    """Wrong credentials (the message is safe to show)."""


class SignInRefused(Exception):
    """A browser sign-in with an identity provider that signs no one in (the message is safe to show)."""


@dataclass(frozen=True, slots=True)
class CliSecret:
    """A personal CLI secret as its owner sees it; `secret` only once, when it is made."""

    id: str
    username: str
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    secret: str | None = None

    def __repr__(self) -> str:
        return f"CliSecret(id={self.id!r}, username={self.username!r}, name={self.name!r})"


class LoginThrottled(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins; retry in {int(retry_after) + 1}s")
        self.retry_after = int(retry_after) + 1


def limiter_address(remote: str) -> str:
    """The address the login limiter counts by: an IPv6 client by its /64 (one host usually
    holds a whole /64), anything else as it is."""
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


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
    login_failure_limit: int = 10  # per (account, client address)
    login_address_failure_limit: int = 100  # per client address, whichever account
    login_failure_window: float = 300.0
    password_params: Argon2Params = DEFAULT_PARAMS


class AuthService:
    def __init__(self, store, settings: AuthSettings, directory: Directory | None = None):
        self.store = store
        self.settings = settings
        # Directory providers (LDAP), asked for accounts that are not local (docs/sign-in.md).
        self.directory = directory or Directory()
        # Those of the config file, always first; the admin API's follow (refresh_providers).
        self.config_providers: tuple[IdentityProvider, ...] = self.directory.order
        self._stored: dict[str, tuple[float, IdentityProvider]] = {}  # name -> (updated_at, provider)
        self._stored_version = 0
        self._stored_checked = float("-inf")
        self._stored_lock = asyncio.Lock()
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
        # Logins are checked two at a time per process, reservation to outcome (see authenticate).
        self._login_slots = asyncio.Semaphore(2)
        # Directory sign-ins wait on the directory, not on the CPU: slots of their own, so a
        # directory that stalls (every exchange running into its timeout) never holds up local
        # sign-ins, the platform admin's break-glass login among them.
        self._directory_slots = asyncio.Semaphore(DIRECTORY_LOGIN_SLOTS)
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

    # Identity providers of the admin API ------------------------------------------------------------
    async def refresh_providers(self, *, force: bool = False) -> None:
        """Pick up providers the admin API made, changed or deleted (on any replica): the store's
        version is read at most every PROVIDER_REFRESH_SECONDS, the providers rebuilt when it moved."""
        now = time.monotonic()
        if not force and now - self._stored_checked < PROVIDER_REFRESH_SECONDS:
            return
        self._stored_checked = now
        version = await self.store.identity_providers_version()
        if version == self._stored_version and not force:
            return
        async with self._stored_lock:
            records = await self.store.stored_identity_providers()
            configured = {p.name for p in self.config_providers}
            fresh: dict[str, tuple[float, IdentityProvider]] = {}
            for record in records:
                if record.name in configured:
                    continue  # the config file's provider of that name wins (the API refuses to make one)
                old = self._stored.get(record.name)
                if old is not None and old[0] == record.updated_at:
                    fresh[record.name] = old
                    continue
                try:
                    spec = spec_from_json(record.name, record.type, record.settings, record.secret)
                    check_providers([spec], where=f"identity provider {record.name}")
                    (provider,) = build_providers([spec])
                except Exception as exc:  # noqa: BLE001 (one bad row must not stop the others)
                    log.warning("identity provider %s of the admin API is left out: %s", record.name, exc)
                    continue
                fresh[record.name] = (record.updated_at, provider)
            gone = [p for name, (_, p) in self._stored.items() if fresh.get(name, (0, None))[1] is not p]
            self._stored = fresh
            self.directory.replace([*self.config_providers, *(p for _, p in fresh.values())])
            self._stored_version = version
        for provider in gone:
            await provider.aclose()

    def stored_provider_names(self) -> set[str]:
        return set(self._stored)

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
        await self.refresh_providers()
        return (await self._principal_since(subject))[0]

    async def _principal_since(self, subject: str) -> tuple[Principal, float]:
        """The principal, and since when its credentials are the current ones: the creation of
        the robot, or the user's creation or last password change. A token issued earlier was
        issued to someone else, or before a password change."""
        robot = parse_robot_account(subject)
        if robot is not None:
            record = await self.store.get_robot(*robot)
            if record is None:
                return Principal.anonymous(), 0.0
            return Principal.for_robot(subject, _robot_grant(record)), record.created_at
        if not subject:
            return Principal.anonymous(), 0.0
        user = await self.store.get_user(subject)
        if user is None or user.disabled:
            return Principal.anonymous(), 0.0
        since = max(user.created_at, user.password_changed_at)
        principal = await self._user_principal(user)
        return (principal, since) if principal is not None else (Principal.anonymous(), 0.0)

    async def _user_principal(self, user) -> Principal | None:
        """The principal of an enabled user row: a local account's memberships, or a provider
        account's as its provider says now (None once it no longer vouches for it)."""
        provider = provider_of(user.password_hash)
        if provider is None:
            return Principal.user(user.username, await self.store.memberships(user.username),
                                  is_platform_admin=user.is_admin)
        # Asked again (within the cache): a user who left the directory, or a provider taken
        # out of the config, stands for no one.
        account = await self._provider_account(provider, user.username)
        if account is None:
            return None
        return await self._directory_principal(account, user.is_admin)

    async def _provider_account(self, provider: str, username: str) -> DirectoryAccount | None:
        p = self.directory.providers.get(provider)
        if p is None or not p.interactive:
            return await self.directory.account(provider, username)
        # A browser sign-in provider (OIDC) cannot be asked: what its last ID token said, for at most
        # groups_max_age_seconds (docs/sign-in.md).
        recorded = await self.store.provider_account(username)
        if recorded is None or recorded.provider != provider:
            return None
        max_age = p.settings.groups_max_age_seconds
        if max_age and time.time() - recorded.signed_in_at > max_age:
            return None
        return DirectoryAccount(provider, username, recorded.display_name, recorded.email,
                                frozenset(recorded.groups))

    async def authenticate(self, account: str, secret: str, remote: str) -> Principal:
        """Check Basic credentials of a user or robot from client address `remote`.

        Failed logins are limited per (account, address) and per address, never per account
        alone (anyone could lock anyone out). The attempt is counted before the password is
        checked, in one store transaction, so parallel guesses cannot all pass the check
        before any of them is counted; a successful login forgets the failures of that
        account from that address and takes its attempt back from the address's count.

        An attempt being checked counts as a failure until it succeeds, so only two per
        process are checked at once (the password hash allows no more anyway): parallel
        logins with the right password, such as a compose file's pulls, are never refused for
        the ones still in flight. Directory sign-ins have DIRECTORY_LOGIN_SLOTS of their own."""
        await self.refresh_providers()
        address = limiter_address(remote)
        pair, per_address = f"user:{account[:256]}|ip:{address}", f"ip:{address}"
        async with await self._slots_for(account):
            retry_after = await self.store.reserve_login_attempt(
                [(pair, self.settings.login_failure_limit),
                 (per_address, self.settings.login_address_failure_limit)], self.settings.login_failure_window)
            if retry_after is not None:
                raise LoginThrottled(retry_after)
            try:
                principal = await self._check_credentials(account, secret)
            except ProviderUnavailable:
                # Nobody could say whether the password was right: take the attempt back (the
                # key "" never holds failures, so none are forgotten).
                await self.store.release_login_attempt("", [pair, per_address])
                raise
            if principal is not None:
                await self.store.release_login_attempt(pair, [per_address])
        if principal is None:
            log.info("failed login for %r from %s", account[:100], remote)
            raise AuthenticationFailed("invalid username or password")
        return principal

    async def _slots_for(self, account: str) -> asyncio.Semaphore:
        """The directory's slots for an account a directory checks (or may: no row yet), else the KDF's."""
        if not self.directory or account.startswith(ROBOT_PREFIX):
            return self._login_slots
        user = await self.store.get_user(account)
        if user is None and self._directory_name(account):
            return self._directory_slots
        if user is not None and provider_of(user.password_hash) is not None:
            return self._directory_slots
        return self._login_slots

    def _directory_name(self, account: str) -> bool:
        """Whether a name without a row may be tried on the directories (a DaoHub user name)."""
        return bool(self.directory) and len(account) <= 64 and NAME_RE.fullmatch(account) is not None

    async def _check_credentials(self, account: str, secret: str) -> Principal | None:
        robot = parse_robot_account(account)
        now = datetime.now(UTC)
        if robot is not None:
            record = await self.store.get_robot(*robot)
            if record is None or not verify_secret(record.secret_hash, secret):
                return None
            principal = Principal.for_robot(account, _robot_grant(record))
            return principal if principal.is_active(now) else None
        if secret.startswith(CLI_SECRET_PREFIX):
            return await self._check_cli_secret(account, secret)
        user = await self.store.get_user(account)
        if user is None and self._directory_name(account):
            return await self._first_directory_sign_in(account, secret)
        provider = provider_of(user.password_hash) if user is not None else None
        if user is not None and provider is not None:
            found = None if user.disabled else await self.directory.check_password(provider, account, secret)
            return None if found is None else await self._directory_principal(found, user.is_admin)
        if user is None:
            # Spend the same time as a real check, so timing does not reveal which users exist.
            await self._kdf(verify_password, _DUMMY_HASH.get(self.settings.password_params), secret,
                            self.settings.password_params)
            return None
        ok = await self._kdf(verify_password, user.password_hash, secret, self.settings.password_params)
        if user.disabled or not ok:
            return None
        return Principal.user(account, await self.store.memberships(account), is_platform_admin=user.is_admin)

    async def _check_cli_secret(self, account: str, secret: str) -> Principal | None:
        """A personal CLI secret of `account` (compared as hashes, in constant time)."""
        secret_id = secret[len(CLI_SECRET_PREFIX):].partition("_")[0]
        record = await self.store.get_cli_secret(secret_id[:64]) if secret_id else None
        ok = record is not None and verify_secret(record.secret_hash, secret)
        if not ok or record.username != account or (record.expires_at is not None and record.expires_at <= time.time()):
            return None
        user = await self.store.get_user(account)
        if user is None or user.disabled:
            return None
        principal = await self._user_principal(user)
        if principal is not None:
            await self.store.touch_cli_secret(record.id, time.time())
        return principal

    # Personal CLI secrets ----------------------------------------------------------------------------
    async def create_cli_secret(self, username: str, name: str, actor: str,
                                expires_in: float | None = None) -> CliSecret | None:
        """A new secret for `username` (shown once: only its hash is kept); None past the limit."""
        secret_id = secrets.token_hex(8)
        secret = f"{CLI_SECRET_PREFIX}{secret_id}_{generate_secret(32)}"
        now = time.time()
        expires = now + expires_in if expires_in else None
        if not await self.store.create_cli_secret(secret_id, username, name, hash_secret(secret), now, expires, actor):
            return None
        return CliSecret(secret_id, username, name, now, expires, None, secret)

    async def cli_secrets(self, username: str) -> list[CliSecret]:
        return [CliSecret(r.id, r.username, r.name, r.created_at, r.expires_at, r.last_used_at)
                for r in await self.store.cli_secrets(username)]

    async def delete_cli_secret(self, username: str, secret_id: str, actor: str) -> bool:
        return await self.store.delete_cli_secret(username, secret_id, actor)

    # Browser sign-in with an OpenID Connect provider ----------------------------------------------------
    async def provider_label(self, username: str) -> str:
        """How the account signs in, for people: "DaoHub" (a local account) or its provider's label."""
        user = await self.store.get_user(username)
        name = provider_of(user.password_hash) if user is not None else None
        if name is None:
            return "DaoHub"
        p = self.directory.providers.get(name)
        return (p.display_name or p.name) if p is not None else name

    def browser_providers(self) -> list[tuple[str, str]]:
        """(name, label) of the providers that sign in through the browser, in config order."""
        return [(p.name, p.display_name or p.name) for p in self.directory.order if p.interactive]

    def _browser_provider(self, name: str):
        p = self.directory.providers.get(name)
        if p is None or not p.interactive:
            raise SignInRefused(f"there is no identity provider {name[:64]!r} to sign in with")
        return p

    async def start_browser_sign_in(self, provider: str, redirect_uri: str, binding: str, next_path: str) -> str:
        """The URL of the provider's authorization endpoint for a new sign-in, whose state, nonce and
        PKCE verifier are kept here (by the state's hash), bound to the browser (`binding`, a value only
        the browser's session cookie gives). Raises SignInRefused, ProviderUnavailable."""
        await self.refresh_providers()
        p = self._browser_provider(provider)
        state, nonce, verifier = p.new_request_secrets()
        url = await p.authorization_url(redirect_uri, state, nonce, verifier)
        await self.store.add_login_state(_sha256(state), p.name, nonce, verifier, _sha256(binding), next_path,
                                         time.time() + OIDC_SIGN_IN_SECONDS)
        return url

    async def finish_browser_sign_in(self, provider: str, state: str, code: str, redirect_uri: str,
                                     binding: str) -> tuple[Principal, str]:
        """The callback: the state must be one this browser started (it works once), then the code is
        redeemed and the ID token checked; the account is provisioned or updated with the groups it
        names. (principal, where to go). Raises SignInRefused, ProviderUnavailable."""
        from auth.providers.oidc import SignInRefused as TokenRefused
        await self.refresh_providers()
        p = self._browser_provider(provider)
        pending = await self.store.take_login_state(_sha256(state)) if state and len(state) <= 200 else None
        if pending is None or pending.provider != p.name or not secrets.compare_digest(pending.binding,
                                                                                       _sha256(binding)):
            raise SignInRefused("this sign-in was not started here or has expired: start again")
        if not code or len(code) > 2000:
            raise SignInRefused("the identity provider sent no authorization code")
        try:
            identity = await p.redeem_code(code, redirect_uri, pending.code_verifier, pending.nonce)
        except TokenRefused as exc:
            raise SignInRefused(str(exc)) from None
        account = identity.account
        outcome = await self.store.record_provider_sign_in(
            account.username, provider_hash(p.name), p.name, identity.subject, account.display_name,
            account.email, sorted(account.groups))
        if outcome == "taken":
            raise SignInRefused(f"the account name {account.username!r} belongs to another account here")
        if outcome == "disabled":
            raise SignInRefused("this account is disabled")
        if outcome == "provisioned":
            log.info("provisioned user %r from identity provider %s", account.username, p.name)
        user = await self.store.get_user(account.username)
        principal = await self._user_principal(user) if user is not None and not user.disabled else None
        if principal is None:
            raise SignInRefused("this account cannot sign in")
        return principal, pending.next_path

    async def _first_directory_sign_in(self, account: str, secret: str) -> Principal | None:
        """A name without a row: the directory providers in order; the first that takes the password
        gets the account a row (just-in-time provisioning), which binds the name to it from then on."""
        found = await self.directory.sign_in(account, secret)
        if found is None:
            return None
        if await self.store.create_user(account, provider_hash(found.provider)):
            log.info("provisioned user %r from identity provider %s", account, found.provider)
            await self.store.audit(account, "user.provision", account, json.dumps(
                {"provider": found.provider, "display_name": found.display_name[:200], "email": found.email[:200]}))
        user = await self.store.get_user(account)
        # A row made at the same moment by another request for another provider (or a local user
        # created meanwhile) wins: this sign-in vouches for nothing then.
        if user is None or user.disabled or provider_of(user.password_hash) != found.provider:
            return None
        return await self._directory_principal(found, user.is_admin)

    async def directory_preview(self, provider: str, username: str
                                ) -> tuple[DirectoryAccount, dict[str, Role], bool] | None:
        """What `provider` says of `username` right now (its cache bypassed), the roles its
        group mappings give them in existing tenants and whether they make them platform admin;
        None if the provider does not know them. Raises ProviderUnavailable, KeyError for an
        unknown provider."""
        await self.refresh_providers()
        p = self.directory.providers[provider]
        account = await (self._provider_account(provider, username) if p.interactive else p.lookup(username))
        if account is None:
            return None
        return account, *await self._mapped(account)

    async def _mapped(self, account: DirectoryAccount) -> tuple[dict[str, Role], bool]:
        """The roles the group mappings give `account` in tenants that exist, and platform admin."""
        provider = self.directory.providers[account.provider]
        mapped, platform_admin = mapped_roles(provider.mappings, account.groups, provider.normalise_group)
        existing: dict[str, Role] = {}
        for tenant, role in mapped.items():
            if await self.store.get_tenant(tenant) is not None:
                existing[tenant] = role
        return existing, platform_admin

    async def _directory_principal(self, account: DirectoryAccount, is_admin: bool) -> Principal:
        """The user's memberships given in DaoHub and those their groups map to (the higher role of
        the two in each tenant; mapped tenants that do not exist are left out), and platform admin
        if the row or a rule says so."""
        existing, platform_admin = await self._mapped(account)
        memberships = merge_memberships(await self.store.memberships(account.username), existing)
        return Principal.user(account.username, memberships, is_platform_admin=is_admin or platform_admin)

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
                    client_id: str = "", user_agent: str = "") -> tuple[IssuedToken, str | None]:
        await self.refresh_keys_if_stale()  # sign with the key other replicas rotated to
        access = await self.grant(principal, raw_scopes)
        issued = self.issuer.issue(principal.name, access, self.settings.token_ttl)
        refresh = None
        if offline and principal.name:
            jti, now = secrets.token_urlsafe(16), time.time()
            refresh = self.issuer.issue_refresh_token(principal.name, client_id or "daohub",
                                                      self.settings.refresh_ttl, jti=jti)
            await self.store.add_refresh_token(jti, principal.name, (client_id or "daohub")[:200],
                                               user_agent[:MAX_USER_AGENT], now, now + self.settings.refresh_ttl)
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
        record = await self.store.use_refresh_token(verified.jti, verified.subject)
        if record is None:
            raise InvalidToken("refresh token revoked, expired or unknown")
        principal, since = await self._principal_since(verified.subject)
        if not principal.is_authenticated(datetime.now(UTC)):
            raise InvalidToken("account no longer active")
        if record.issued_at < since:
            raise InvalidToken("issued before the account was recreated or its password changed")
        return principal

    async def hash_password(self, password: str) -> str:
        return await self._kdf(hash_password, password, self.settings.password_params)

    async def revoke_refresh_token(self, token: str) -> None:
        verified = self.verifier.verify_refresh_token(token)
        await self.store.revoke_refresh_tokens(verified.subject, verified.jti)

    # Web sessions (the /apps/ pages' sign-in) ---------------------------------------------------------
    async def start_web_session(self, sid_hash: str, username: str, expires_at: float) -> None:
        """Record a signed-in web session (by the hash of its id) until `expires_at`."""
        await self.store.add_web_session(sid_hash, username, expires_at)

    async def web_session_live(self, sid_hash: str, username: str) -> bool:
        """Whether the session exists for `username`, was not ended and has not expired."""
        return await self.store.web_session_live(sid_hash, username)

    async def end_web_session(self, sid_hash: str) -> None:
        """Sign a web session out: its cookie stands for no one any more."""
        await self.store.end_web_session(sid_hash)

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


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


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
