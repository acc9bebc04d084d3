"""The identity half of the metadata store: tenants, users, robots, keys, throttling, audit.

Kept apart from MetadataStore so each interface stays small; the SQLite and PostgreSQL
stores implement both.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Collection, Mapping, Sequence


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


@dataclasses.dataclass(frozen=True, slots=True)
class MemberRecord:
    username: str
    role: str


@dataclasses.dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    public: bool
    size_bytes: int  # distinct blobs linked into the repository
    tag_count: int
    manifest_count: int
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class TagRecord:
    name: str
    digest: str
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    target: str
    tenant: str | None
    detail_json: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    jti: str
    subject: str  # a username or robot$<tenant>+<name>
    client_id: str
    user_agent: str
    issued_at: float
    expires_at: float
    last_used_at: float | None
    revoked_at: float | None


class TenantNotEmptyError(Exception):
    """The tenant still has repositories; nothing was deleted."""


USER_FIELDS = frozenset({"is_admin", "disabled"})
TENANT_FIELDS = frozenset({"display_name", "quota_bytes"})


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
    async def set_password(self, username: str, password_hash: str) -> bool:
        """Change the password; revokes the user's refresh tokens and ends their web sessions."""

    @abc.abstractmethod
    async def memberships(self, username: str) -> dict[str, str]:
        """tenant name -> role."""

    @abc.abstractmethod
    async def list_users(self, limit: int, after: str | None) -> list[UserRecord]:
        """Users in username order after `after`."""

    @abc.abstractmethod
    async def update_user(self, username: str, changes: Mapping[str, bool]) -> UserRecord | None:
        """Set the given USER_FIELDS; None if there is no such user. Disabling the user revokes
        their refresh tokens and ends their web sessions."""

    @abc.abstractmethod
    async def delete_user(self, username: str) -> bool:
        """Delete the user, their memberships, refresh tokens and web sessions."""

    # Tenants -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_tenant(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool: ...

    @abc.abstractmethod
    async def get_tenant(self, name: str) -> TenantRecord | None: ...

    @abc.abstractmethod
    async def list_tenants(self, limit: int, after: str | None, *,
                           only: Collection[str] | None = None) -> list[TenantRecord]:
        """Tenants in name order after `after`; with `only`, just those of these names."""

    @abc.abstractmethod
    async def update_tenant(self, name: str, changes: Mapping[str, object]) -> TenantRecord | None:
        """Set the given TENANT_FIELDS; None if there is no such tenant."""

    @abc.abstractmethod
    async def delete_tenant(self, name: str) -> bool:
        """Delete the tenant, its memberships and robots. False if unknown.

        Raises TenantNotEmptyError (and deletes nothing) while any repository `<name>/...` exists."""

    @abc.abstractmethod
    async def set_membership(self, tenant: str, username: str, role: str | None) -> bool:
        """Add or change a member's role; None removes the member. False if tenant or user is unknown."""

    @abc.abstractmethod
    async def tenant_members(self, tenant: str, limit: int, after: str | None) -> list[MemberRecord]:
        """Members in username order after `after`."""

    # Robots --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_robot(self, robot: RobotRecord) -> bool: ...

    @abc.abstractmethod
    async def get_robot(self, tenant: str, name: str) -> RobotRecord | None: ...

    @abc.abstractmethod
    async def list_robots(self, tenant: str, limit: int, after: str | None) -> list[RobotRecord]:
        """Robots of `tenant` in name order after `after`."""

    @abc.abstractmethod
    async def revoke_robot(self, tenant: str, name: str) -> bool:
        """Mark the robot revoked (it keeps its row, for the record). False if unknown."""

    @abc.abstractmethod
    async def delete_robot(self, tenant: str, name: str) -> bool: ...

    # Repository visibility -------------------------------------------------------------------
    @abc.abstractmethod
    async def public_repositories(self, names: list[str]) -> set[str]:
        """The subset of `names` that exist and are public."""

    @abc.abstractmethod
    async def set_repository_public(self, name: str, public: bool) -> bool: ...

    # Repository administration -------------------------------------------------------------
    @abc.abstractmethod
    async def repository_summaries(self, tenant: str, limit: int, after: str | None) -> list[RepositorySummary]:
        """Every repository `<tenant>/...` (with or without manifests) in name order after `after`."""

    @abc.abstractmethod
    async def repository_summary(self, name: str) -> RepositorySummary | None: ...

    @abc.abstractmethod
    async def delete_repository(self, name: str) -> bool:
        """Delete the repository with its manifests, tags, blob links and uploads (blobs stay for GC)."""

    @abc.abstractmethod
    async def list_tag_records(self, repository: str, limit: int, after: str | None) -> list[TagRecord] | None:
        """Tags with their digests in name order after `after`; None if the repository does not exist."""

    # Signing keys and revocation ---------------------------------------------------------------
    @abc.abstractmethod
    async def signing_keys(self) -> list[SigningKeyRecord]:
        """Keys not retired, newest first."""

    @abc.abstractmethod
    async def add_signing_key(self, kid: str, private_pem: str, *, retire_older_than_rank: int | None = None) -> None:
        """Add a key (it becomes current). Keys beyond the newest `retire_older_than_rank` are retired."""

    # Refresh tokens and web sessions ---------------------------------------------------------
    @abc.abstractmethod
    async def add_refresh_token(self, jti: str, subject: str, client_id: str, user_agent: str, issued_at: float,
                                expires_at: float) -> None: ...

    @abc.abstractmethod
    async def use_refresh_token(self, jti: str, subject: str) -> RefreshTokenRecord | None:
        """The token's row if it is live (not revoked, not expired, issued to `subject`), its
        last_used_at set to now; None otherwise."""

    @abc.abstractmethod
    async def list_refresh_tokens(self, subject: str, limit: int, after: str | None) -> list[RefreshTokenRecord]:
        """Live refresh tokens of `subject` in jti order after `after`."""

    @abc.abstractmethod
    async def revoke_refresh_tokens(self, subject: str, jti: str | None = None) -> int:
        """Revoke the live refresh token `jti` of `subject`, or all of them; the number revoked."""

    @abc.abstractmethod
    async def add_web_session(self, id_hash: str, username: str, expires_at: float) -> None: ...

    @abc.abstractmethod
    async def web_session_live(self, id_hash: str, username: str) -> bool:
        """Whether the session exists for `username`, is not ended and has not expired."""

    @abc.abstractmethod
    async def end_web_session(self, id_hash: str) -> None: ...

    # Login throttling ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def reserve_login_attempt(self, limits: Sequence[tuple[str, int]], window: float) -> float | None:
        """Count one attempt against every `(key, limit)` in one transaction, before the password
        is checked: None if each key was under its limit (all counted), else the seconds until
        the first full key's window ends (nothing counted)."""

    @abc.abstractmethod
    async def release_login_attempt(self, clear: str, release: Sequence[str]) -> None:
        """After a successful login: forget the attempts of key `clear`; take back one attempt
        of each key in `release`."""

    # Audit -------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def audit(self, actor: str, action: str, target: str, detail_json: str | None = None, *,
                    tenant: str | None = None) -> None:
        """Append an audit row; `tenant` is the tenant the change concerns, if any."""

    @abc.abstractmethod
    async def audit_entries(self, limit: int, before_id: int | None, *,
                            tenants: Collection[str] | None = None) -> list[AuditRecord]:
        """Newest first, ids below `before_id`; with `tenants`, only rows concerning those tenants."""
