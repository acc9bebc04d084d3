"""The identity provider interface, what a provider answers, and group mapping.

`local` (the users table's argon2id passwords) is built into AuthService. Every other provider
is an `IdentityProvider` of a type (`ldap` today; `oidc` will add one whose `check_password`
checks the user's CLI secrets and whose web sign-in is a redirect) and answers two questions:
is this the password of that user (`check_password`), and is that user still there, with
which groups (`lookup`). A provider that cannot answer raises `ProviderUnavailable`: the
caller then answers 503, never "wrong password".

Accounts a provider signed in get a row in `users` (just-in-time provisioning) whose
password hash is `!provider:<name>`: no argon2id hash, so a local password check can never
pass for them, and the row says which provider vouches for the account.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Mapping

from ..policy import Role
from ..provider_settings import GroupMapping

PROVIDER_HASH_PREFIX = "!provider:"
_ROLE_RANK = {Role.GUEST: 1, Role.DEVELOPER: 2, Role.MAINTAINER: 3, Role.ADMIN: 4}


class ProviderUnavailable(Exception):
    """The provider could not answer (down, timed out, misconfigured). The message is safe to show."""


@dataclasses.dataclass(frozen=True, slots=True)
class DirectoryAccount:
    """A user as a provider sees them now."""

    provider: str
    username: str          # the DaoHub name: the directory's login name, lowercased
    display_name: str
    email: str
    groups: frozenset[str]  # normalised group ids (normalise_group), compared with the mappings'


class IdentityProvider(abc.ABC):
    name: str
    cache_seconds: float
    mappings: tuple[GroupMapping, ...]
    # True for providers that sign people in through the browser (OIDC): they cannot be asked
    # about a user, so the account is what they said at the user's last sign-in (AuthService).
    interactive: bool = False
    display_name: str = ""

    @abc.abstractmethod
    async def check_password(self, username: str, password: str) -> DirectoryAccount | None:
        """The account if `password` is `username`'s, None if it is not or there is no such user.
        Never called with an empty password."""

    @abc.abstractmethod
    async def lookup(self, username: str) -> DirectoryAccount | None:
        """The account as it is now, without a password; None once it left the directory."""

    @abc.abstractmethod
    def normalise_group(self, group: str) -> str:
        """The form in which groups are compared (an LDAP DN's canonical spelling)."""

    async def aclose(self) -> None:  # noqa: B027 (optional)
        """Release what the provider holds."""


def provider_hash(provider: str) -> str:
    """The `users.password_hash` of an account provisioned by `provider`."""
    return f"{PROVIDER_HASH_PREFIX}{provider}"


def provider_of(password_hash: str) -> str | None:
    """The provider that vouches for an account, by its stored hash; None for a local account."""
    if password_hash.startswith(PROVIDER_HASH_PREFIX):
        return password_hash[len(PROVIDER_HASH_PREFIX):]
    return None


def mapped_roles(mappings: Iterable[GroupMapping], groups: frozenset[str],
                 normalise=lambda g: g) -> tuple[dict[str, Role], bool]:
    """What the rules give a member of `groups`: tenant -> role (the highest of the rules that
    match), and whether they are a platform admin."""
    roles: dict[str, Role] = {}
    platform_admin = False
    for rule in mappings:
        if normalise(rule.group) not in groups:
            continue
        platform_admin = platform_admin or rule.platform_admin
        if rule.tenant and rule.role:
            role = Role(rule.role)
            if rule.tenant not in roles or _ROLE_RANK[role] > _ROLE_RANK[roles[rule.tenant]]:
                roles[rule.tenant] = role
    return roles, platform_admin


def merge_memberships(local: Mapping[str, str], mapped: Mapping[str, Role]) -> dict[str, Role]:
    """Memberships given in DaoHub and those the groups give: the higher role per tenant."""
    merged = {tenant: Role(role) for tenant, role in local.items()}
    for tenant, role in mapped.items():
        if tenant not in merged or _ROLE_RANK[role] > _ROLE_RANK[merged[tenant]]:
            merged[tenant] = role
    return merged
