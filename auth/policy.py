"""Every permission decision in DaoHub, as pure functions over plain dataclasses.

* Repositories are ``<tenant>/<path...>``; the tenant is the first path
  component.  A single-component name (``alpine``) belongs to no tenant, so
  only the platform admin may write it.
* Tenant roles: guest (pull), developer (+push), maintainer (+delete), admin
  (+ manage members, robots and settings).  The platform admin may do
  everything everywhere.
* Public repositories allow pull to everyone, anonymous included.  Nothing
  else crosses a tenant boundary.
* Robots are tenant-scoped: they get their listed actions on repositories of
  their own tenant that match one of their patterns and, like anyone, pull on
  public repositories; once expired or revoked they get nothing at all, not
  even public pulls.  In a pattern ``*`` and ``?`` stay inside one path
  segment and a ``**`` segment spans any number of segments: ``team/ci/*``
  matches ``team/ci/app`` but not ``team/ci/app/sub``; ``team/ci/**`` matches
  both.
* Pull-through cache namespaces (``<upstream>/...``, and names a mirror
  routes there) hold only what upstreams serve: the only action on them is
  pull, which goes to the platform admin, to members and robots (with pull)
  of the upstream's allowed tenants (any tenant when it lists none; then any
  signed-in principal), and to anonymous callers only where the upstream
  says so.  Push and delete are refused for everyone, admin included.
* ``registry:catalog:*`` goes to any authenticated principal; listing is
  filtered per repository elsewhere.
* The admin API (``/api/v1/``) is for people: active users only, never robots
  or anonymous callers (a robot may only ask who it is).  The platform admin
  manages users, creates tenants and changes their settings (display name,
  quota); members may read their tenants; a tenant admin manages members and
  robots and reads the tenant's audit trail; a maintainer or tenant admin
  changes a repository's visibility and deletes it; deleting a tag needs the
  ``delete`` action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from .scopes import ALL, CATALOG, DELETE, PULL, PUSH, REGISTRY, REPOSITORY, ResourceScope

__all__ = [
    "MANAGE_ALL", "ROLE_ACTIONS", "CacheAccess", "CatalogScope", "Manage", "Principal", "PrincipalKind",
    "RepositoryInfo", "RobotGrant", "Role", "allowed_actions", "audit_tenants", "can_administer_repository",
    "can_delete", "can_manage_platform", "can_manage_refresh_tokens", "can_manage_tenant", "can_read",
    "can_read_audit", "can_set_password",
    "can_use_admin_api", "can_view_tenant", "can_view_user", "catalog_scope", "grant", "needs_current_password",
    "pattern_matches", "pattern_regex", "requested_repository_names", "tenant_of", "visible_tenants"
]

RepoLookup = Callable[[str], "RepositoryInfo | None"]


class Role(StrEnum):
    GUEST = "guest"
    DEVELOPER = "developer"
    MAINTAINER = "maintainer"
    ADMIN = "admin"


class Manage(StrEnum):
    MEMBERS = "members"
    ROBOTS = "robots"
    SETTINGS = "settings"


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    USER = "user"
    ROBOT = "robot"


_REPO_ACTIONS = frozenset({PULL, PUSH, DELETE})
_NOTHING: frozenset[str] = frozenset()
ROLE_ACTIONS: Mapping[Role, frozenset[str]] = {
    Role.GUEST: frozenset({PULL}),
    Role.DEVELOPER: frozenset({PULL, PUSH}),
    Role.MAINTAINER: _REPO_ACTIONS,
    Role.ADMIN: _REPO_ACTIONS,
}
MANAGE_ALL = frozenset(Manage)
_PULL_ONLY = frozenset({PULL})


def tenant_of(name: str) -> str | None:
    """The tenant owning repository *name*, or None for a name without a ``/``."""
    tenant, sep, rest = name.partition("/")
    return tenant if sep and tenant and rest else None


def _segment_matches(pat: str, seg: str) -> bool:
    """Glob within one path segment: ``*`` any run, ``?`` one character.

    Iterative with single-star backtracking, so it is O(len(pat) * len(seg))
    at worst: no regex, no catastrophic backtracking on hostile patterns.
    """
    p = s = 0
    star, mark = -1, 0
    while s < len(seg):
        if p < len(pat) and pat[p] == "*":
            star, mark, p = p, s, p + 1
        elif p < len(pat) and pat[p] in ("?", seg[s]):
            p, s = p + 1, s + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            s = mark
        else:
            return False
    while p < len(pat) and pat[p] == "*":
        p += 1
    return p == len(pat)


def pattern_matches(pattern: str, name: str) -> bool:
    """Robot repository pattern match, segment by segment.

    A pattern segment ``**`` matches zero or more whole name segments; any
    other segment is matched against exactly one name segment, where ``*`` and
    ``?`` never cross a ``/``.  A pattern without wildcards is an exact name.
    """
    segments = name.split("/")
    reachable = {0}  # indexes into segments reachable after the pattern so far
    for pat in pattern.split("/"):
        if pat == "**":
            reachable = set(range(min(reachable), len(segments) + 1))
        else:
            reachable = {i + 1 for i in reachable
                         if i < len(segments) and _segment_matches(pat, segments[i])}
        if not reachable:
            return False
    return len(segments) in reachable


@dataclass(frozen=True)
class RobotGrant:
    """What a robot account may do: *actions* on *repositories* (names or patterns) of *tenant*."""

    tenant: str
    repositories: tuple[str, ...]
    actions: frozenset[str]
    expires_at: datetime | None = None  # None: never expires
    revoked: bool = False

    def is_active(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def covers(self, repository: str) -> bool:
        return tenant_of(repository) == self.tenant and any(
            pattern_matches(p, repository) for p in self.repositories)


@dataclass(frozen=True, eq=False)
class Principal:
    kind: PrincipalKind
    name: str = ""
    is_platform_admin: bool = False
    memberships: Mapping[str, Role] = field(default_factory=dict)
    robot: RobotGrant | None = None

    def __post_init__(self) -> None:
        # Copy and normalise: role names become Role (ValueError if unknown), and the mapping is read-only.
        roles = {tenant: Role(role) for tenant, role in self.memberships.items()}
        object.__setattr__(self, "memberships", MappingProxyType(roles))
        if (self.kind is PrincipalKind.ROBOT) != (self.robot is not None):
            raise ValueError("a robot principal needs a RobotGrant, and only robots have one")
        if self.kind is not PrincipalKind.USER and (self.is_platform_admin or self.memberships):
            raise ValueError("only users can be platform admins or tenant members")

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(PrincipalKind.ANONYMOUS)

    @classmethod
    def user(cls, name: str, memberships: Mapping[str, Role | str] | None = None,
             is_platform_admin: bool = False) -> Principal:
        return cls(PrincipalKind.USER, name, is_platform_admin, dict(memberships or {}))  # type: ignore[arg-type]

    @classmethod
    def for_robot(cls, name: str, grant: RobotGrant) -> Principal:
        return cls(PrincipalKind.ROBOT, name, robot=grant)

    def is_active(self, now: datetime) -> bool:
        """False only for an expired or revoked robot."""
        return self.robot is None or self.robot.is_active(now)

    def is_authenticated(self, now: datetime) -> bool:
        return self.kind is not PrincipalKind.ANONYMOUS and self.is_active(now)


@dataclass(frozen=True)
class CacheAccess:
    """Who may pull through one upstream of the pull-through cache."""

    upstream: str
    tenants: frozenset[str] = frozenset()  # empty: any signed-in user or robot
    anonymous: bool = False


@dataclass(frozen=True)
class RepositoryInfo:
    name: str
    tenant: str | None
    public: bool = False
    # Set when the name reaches a pull-through cache namespace: its rules replace the tenant's.
    cache: CacheAccess | None = None

    def __post_init__(self) -> None:
        if self.tenant != tenant_of(self.name):
            raise ValueError(f"repository {self.name!r} does not belong to tenant {self.tenant!r}")

    @classmethod
    def for_name(cls, name: str, public: bool = False) -> RepositoryInfo:
        return cls(name, tenant_of(name), public)


def allowed_actions(principal: Principal, repo: RepositoryInfo, now: datetime) -> frozenset[str]:
    """Every repository action (pull, push, delete) *principal* may perform on *repo* at *now*."""
    if not principal.is_active(now):
        return _NOTHING
    if repo.cache is not None:
        return _PULL_ONLY if _may_pull_cache(principal, repo.cache, now) else _NOTHING
    if principal.is_platform_admin:
        return _REPO_ACTIONS
    allowed: set[str] = {PULL} if repo.public else set()
    if repo.tenant is not None:
        role = principal.memberships.get(repo.tenant)
        if role is not None:
            allowed |= ROLE_ACTIONS[role]
        robot = principal.robot
        if robot is not None and robot.covers(repo.name):
            allowed |= robot.actions & _REPO_ACTIONS
    return frozenset(allowed)


def _may_pull_cache(principal: Principal, access: CacheAccess, now: datetime) -> bool:
    if principal.is_platform_admin or access.anonymous:
        return True
    if not principal.is_authenticated(now):
        return False
    if not access.tenants:
        return principal.robot is None or PULL in principal.robot.actions
    if principal.robot is not None:
        return principal.robot.tenant in access.tenants and PULL in principal.robot.actions
    return any(tenant in access.tenants for tenant in principal.memberships)


def can_read(principal: Principal, repo: RepositoryInfo, now: datetime) -> bool:
    """May *principal* pull from (and so see in the catalog) *repo*?"""
    return PULL in allowed_actions(principal, repo, now)


@dataclass(frozen=True)
class CatalogScope:
    """The repositories a caller may see in the catalog, as a store can filter them in its query:
    public ones (if *public*), every repository of *tenants*, and the repositories of
    *robot_tenant* whose name, with a ``/`` in front, fully matches one of *robot_patterns*
    (regular expressions written in the subset Python's ``re`` and PostgreSQL share; see
    :func:`pattern_regex`). It is exactly what :func:`can_read` allows, cache namespaces aside
    (the catalog lists those by their tenant's rules)."""

    tenants: frozenset[str] = frozenset()
    public: bool = False
    robot_tenant: str | None = None
    robot_patterns: tuple[str, ...] = ()


def pattern_regex(pattern: str) -> str:
    """A regular expression that fully matches ``"/" + name`` exactly when
    :func:`pattern_matches` (*pattern*, name) holds, for names without empty segments.

    Each pattern segment becomes ``/`` plus its glob (``*`` as ``[^/]*``, ``?`` as ``[^/]``),
    and a ``**`` segment ``(/[^/]*)*``; every other character is escaped with a backslash,
    which both Python and PostgreSQL read as that character."""
    out = ["^"]
    for segment in pattern.split("/"):
        if segment == "**":
            out.append("(/[^/]*)*")
            continue
        out.append("/")
        for ch in segment:
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            else:
                out.append(ch if ch.isascii() and ch.isalnum() else "\\" + ch)
    out.append("$")
    return "".join(out)


def catalog_scope(principal: Principal, now: datetime) -> CatalogScope | None:
    """What *principal* may see listed in the catalog; None means everything (the platform admin)."""
    if not principal.is_active(now):
        return CatalogScope()
    if principal.is_platform_admin:
        return None
    robot = principal.robot
    if robot is not None and PULL in robot.actions:
        return CatalogScope(public=True, robot_tenant=robot.tenant,
                            robot_patterns=tuple(pattern_regex(p) for p in robot.repositories))
    return CatalogScope(frozenset(principal.memberships), public=True)


def can_manage_tenant(principal: Principal, tenant: str, what: Manage | str) -> bool:
    """May *principal* manage *what* (members, robots, settings) of *tenant*? Unknown *what*: no."""
    if what not in MANAGE_ALL or principal.kind is not PrincipalKind.USER:
        return False
    return principal.is_platform_admin or principal.memberships.get(tenant) is Role.ADMIN


def can_delete(principal: Principal, repo: RepositoryInfo, now: datetime) -> bool:
    """May *principal* delete manifests and tags of *repo*?"""
    return DELETE in allowed_actions(principal, repo, now)


# The admin API ----------------------------------------------------------------------------------
def _is_user(principal: Principal) -> bool:
    return principal.kind is PrincipalKind.USER


def can_use_admin_api(principal: Principal, now: datetime) -> bool:
    """Only active users call the admin API; robots and anonymous callers never do."""
    return _is_user(principal) and principal.is_active(now)


def can_manage_platform(principal: Principal) -> bool:
    """Users, tenant creation and deletion, tenant settings (display name, quota), the whole audit log."""
    return _is_user(principal) and principal.is_platform_admin


def visible_tenants(principal: Principal) -> frozenset[str] | None:
    """The tenants *principal* may see listed: None means every tenant."""
    if can_manage_platform(principal):
        return None
    return frozenset(principal.memberships) if _is_user(principal) else frozenset()


def can_view_tenant(principal: Principal, tenant: str) -> bool:
    """May *principal* read *tenant* (its settings and quota)? Any member may."""
    return can_manage_platform(principal) or (_is_user(principal) and tenant in principal.memberships)


def can_view_user(principal: Principal, username: str) -> bool:
    """The platform admin reads every account, a user their own."""
    return can_manage_platform(principal) or (_is_user(principal) and principal.name == username)


def can_set_password(principal: Principal, username: str) -> bool:
    return can_view_user(principal, username)


def can_manage_refresh_tokens(principal: Principal, username: str) -> bool:
    """A user lists and revokes their own refresh tokens; the platform admin anyone's."""
    return can_view_user(principal, username)


def needs_current_password(principal: Principal, username: str) -> bool:
    """A user changing their own password proves the current one; the platform admin does not."""
    return not can_manage_platform(principal)


def can_administer_repository(principal: Principal, repo: RepositoryInfo) -> bool:
    """Change visibility of, or delete, a whole repository: maintainers and admins of its tenant."""
    if not _is_user(principal):
        return False
    if principal.is_platform_admin:
        return True
    return repo.tenant is not None and principal.memberships.get(repo.tenant) in (Role.MAINTAINER, Role.ADMIN)


def audit_tenants(principal: Principal) -> frozenset[str] | None:
    """Tenants whose audit rows *principal* may read: None means all rows, platform-level ones too."""
    if can_manage_platform(principal):
        return None
    if not _is_user(principal):
        return frozenset()
    return frozenset(t for t, role in principal.memberships.items() if role is Role.ADMIN)


def can_read_audit(principal: Principal, tenant: str | None = None) -> bool:
    """May *principal* read the audit log at all (*tenant* None) or the rows of *tenant*?"""
    allowed = audit_tenants(principal)
    if allowed is None:
        return True
    return tenant in allowed if tenant is not None else bool(allowed)


def requested_repository_names(requested: Iterable[ResourceScope]) -> list[str]:
    """Repository names :func:`grant` will look up, so async callers can pre-fetch them."""
    return [s.name for s in requested if s.type == REPOSITORY]


def grant(principal: Principal, requested: Iterable[ResourceScope], repo_lookup: RepoLookup,
          now: datetime) -> list[ResourceScope]:
    """The scopes to put in the token: requested ∩ allowed, dropping scopes left empty.

    *repo_lookup(name)* returns the stored repository, or None if it does not
    exist yet (then it is treated as a new private repository of the tenant its
    name implies, which is what a first push needs).
    """
    granted: list[ResourceScope] = []
    for scope in requested:
        if scope.type == REPOSITORY:
            repo = repo_lookup(scope.name)
            if repo is None or repo.name != scope.name:
                repo = RepositoryInfo.for_name(scope.name)
            actions = scope.actions & allowed_actions(principal, repo, now)
        elif scope.type == REGISTRY and scope.name == CATALOG and principal.is_authenticated(now):
            actions = scope.actions & {ALL}
        else:
            continue
        if actions:
            granted.append(scope.with_actions(actions))
    return granted
