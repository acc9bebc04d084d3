"""The identity half of the metadata store: tenants, users, robots, keys, throttling, audit.

Kept apart from MetadataStore so each interface stays small; the SQLite and PostgreSQL
stores implement both.
"""

from __future__ import annotations

import abc
import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class TenantRecord:
    name: str
    display_name: str
    quota_bytes: int | None
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    password_hash: str
    is_admin: bool
    disabled: bool
    created_at: float
    password_changed_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class RobotRecord:
    tenant: str
    name: str
    secret_hash: str
    repositories: tuple[str, ...]
    actions: tuple[str, ...]
    expires_at: float | None
    revoked: bool
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    kid: str
    private_pem: str
    created_at: float
    retired_at: float | None


class IdentityStore(abc.ABC):
    # Users ---------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_user(self, username: str, password_hash: str, *, is_admin: bool = False) -> bool:
        """False if the username is taken."""

    @abc.abstractmethod
    async def get_user(self, username: str) -> UserRecord | None: ...

    @abc.abstractmethod
    async def count_users(self) -> int: ...

    @abc.abstractmethod
    async def set_password(self, username: str, password_hash: str) -> bool: ...

    @abc.abstractmethod
    async def memberships(self, username: str) -> dict[str, str]:
        """tenant name -> role."""

    # Tenants -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_tenant(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool: ...

    @abc.abstractmethod
    async def get_tenant(self, name: str) -> TenantRecord | None: ...

    @abc.abstractmethod
    async def set_membership(self, tenant: str, username: str, role: str | None) -> bool:
        """Add or change a member's role; None removes the member. False if tenant or user is unknown."""

    # Robots --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_robot(self, robot: RobotRecord) -> bool: ...

    @abc.abstractmethod
    async def get_robot(self, tenant: str, name: str) -> RobotRecord | None: ...

    # Repository visibility -------------------------------------------------------------------
    @abc.abstractmethod
    async def public_repositories(self, names: list[str]) -> set[str]:
        """The subset of `names` that exist and are public."""

    @abc.abstractmethod
    async def set_repository_public(self, name: str, public: bool) -> bool: ...

    # Signing keys and revocation ---------------------------------------------------------------
    @abc.abstractmethod
    async def signing_keys(self) -> list[SigningKeyRecord]:
        """Keys not retired, newest first."""

    @abc.abstractmethod
    async def add_signing_key(self, kid: str, private_pem: str, *, retire_older_than_rank: int | None = None) -> None:
        """Add a key (it becomes current). Keys beyond the newest `retire_older_than_rank` are retired."""

    @abc.abstractmethod
    async def revoke_token(self, jti: str, expires_at: float) -> None: ...

    @abc.abstractmethod
    async def is_token_revoked(self, jti: str) -> bool: ...

    # Login throttling ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def record_login_failure(self, key: str, window: float) -> int:
        """Count a failure for `key` in the current window; return the count in the window."""

    @abc.abstractmethod
    async def login_failures(self, key: str, window: float) -> tuple[int, float]:
        """(failures in the current window, seconds until the window ends)."""

    @abc.abstractmethod
    async def clear_login_failures(self, key: str) -> None: ...

    # Audit -------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def audit(self, actor: str, action: str, target: str, detail_json: str | None = None) -> None: ...
