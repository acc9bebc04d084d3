"""Identity providers other than the local users table, and the short cache in front of them.

`build_providers(specs)` makes one provider per `auth.providers` item (by its `type`);
`Directory` holds them in config order and remembers their answers for each provider's
`cache_seconds`: the account of a user (groups included, or that they are gone), and that
one password bound for one user (as a keyed hash, in this process's memory only). Wrong
passwords are never remembered, so each one reaches the directory (and the login limiter).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence

from ..provider_settings import ProviderSpec
from .base import (
    PROVIDER_HASH_PREFIX,
    DirectoryAccount,
    IdentityProvider,
    ProviderUnavailable,
    mapped_roles,
    merge_memberships,
    provider_hash,
    provider_of,
)

__all__ = ["PROVIDER_HASH_PREFIX", "Directory", "DirectoryAccount", "IdentityProvider", "ProviderUnavailable",
           "build_providers", "mapped_roles", "merge_memberships", "provider_hash", "provider_of"]

MAX_CACHED = 10_000  # entries per cache; past it the expired ones go, then all


def build_providers(specs: Sequence[ProviderSpec]) -> list[IdentityProvider]:
    providers: list[IdentityProvider] = []
    for spec in specs:
        if spec.type == "ldap":
            from .ldap import LdapProvider

            providers.append(LdapProvider(spec))
        elif spec.type == "oidc":
            from .oidc import OidcProvider

            providers.append(OidcProvider(spec))
        else:  # config validation lets no other type through
            raise ValueError(f"unknown identity provider type {spec.type!r}")
    return providers


class Directory:
    def __init__(self, providers: Sequence[IdentityProvider] = (), clock: Callable[[], float] = time.monotonic):
        self.order = tuple(providers)
        self.providers = {p.name: p for p in providers}
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._accounts: dict[tuple[str, str], tuple[float, DirectoryAccount | None]] = {}
        self._binds: dict[tuple[str, str], tuple[float, bytes, DirectoryAccount]] = {}

    def __bool__(self) -> bool:
        return bool(self.order)

    def replace(self, providers: Sequence[IdentityProvider]) -> None:
        """Serve these providers from now on (the admin API changed some); answers cached for a
        provider that is gone or was rebuilt are dropped."""
        kept = {p.name: p for p in providers}
        for name, old in self.providers.items():
            if kept.get(name) is not old:
                for cache in (self._accounts, self._binds):
                    for key in [k for k in cache if k[0] == name]:
                        del cache[key]
        self.order = tuple(providers)
        self.providers = kept

    async def sign_in(self, username: str, password: str) -> DirectoryAccount | None:
        """A first sign-in (no row yet): the first provider that takes the password. Raises
        ProviderUnavailable when none took it and one of them could not answer."""
        down: ProviderUnavailable | None = None
        for provider in self.order:
            try:
                account = await self.check_password(provider.name, username, password)
            except ProviderUnavailable as exc:
                down = down or exc
                continue
            if account is not None:
                return account
        if down is not None:
            raise down
        return None

    async def check_password(self, provider: str, username: str, password: str) -> DirectoryAccount | None:
        """`username`'s account at `provider` if `password` is theirs (cached), else None."""
        p = self.providers.get(provider)
        if p is None or not password:
            return None
        key, now = (provider, username), self._clock()
        digest = hmac.new(self._key, f"{provider}\0{username}\0{password}".encode(errors="surrogatepass"),
                          hashlib.sha256).digest()
        cached = self._binds.get(key)
        if cached is not None and cached[0] > now and hmac.compare_digest(cached[1], digest):
            return cached[2]
        account = await p.check_password(username, password)
        if account is None:
            self._binds.pop(key, None)
        elif p.cache_seconds > 0:
            _put(self._binds, key, (now + p.cache_seconds, digest, account), now)
            _put(self._accounts, key, (now + p.cache_seconds, account), now)
        return account

    async def account(self, provider: str, username: str) -> DirectoryAccount | None:
        """`username` at `provider` now (cached); None once they left it or the provider is gone."""
        p = self.providers.get(provider)
        if p is None:
            return None
        key, now = (provider, username), self._clock()
        cached = self._accounts.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        account = await p.lookup(username)
        if p.cache_seconds > 0:
            _put(self._accounts, key, (now + p.cache_seconds, account), now)
        if account is None:
            self._binds.pop(key, None)
        return account

    def forget(self) -> None:
        """Drop every cached answer."""
        self._accounts.clear()
        self._binds.clear()

    async def aclose(self) -> None:
        for provider in self.order:
            await provider.aclose()


def _put(cache: dict, key, value, now: float) -> None:
    if len(cache) >= MAX_CACHED and key not in cache:
        for stale in [k for k, v in cache.items() if v[0] <= now]:
            del cache[stale]
        if len(cache) >= MAX_CACHED:
            cache.clear()
    cache[key] = value
