"""Tenant administration without HTTP: users, tenants, members, robots, repository settings.

The admin API (hub/handlers/admin) and the CLI (hub/cli/identity.py) both call this, so a
rule (name grammar, password length, robot patterns inside their tenant) and the audit row
of every change are written once. Who may call what is decided by auth.policy before these
methods run; here the rules of the data are checked and failures raise hub.problems errors.
The admin handlers read through it too (the pages of users, tenants, members, robots,
repositories, tags and audit rows): no handler calls a store.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from auth.passwords import generate_secret, hash_secret
from auth.policy import Role, tenant_of
from auth.providers import provider_of
from auth.scopes import DELETE, PULL, PUSH
from auth.service import robot_account

from ..db.gc_store import GcRunRecord
from ..db.immutable_store import StoredImmutableRules, TagImmutableError
from ..db.retention_store import StoredPolicy
from ..db.identity import (
    AuditRecord,
    MemberRecord,
    RefreshTokenRecord,
    RepositorySummary,
    RobotRecord,
    TagRecord,
    TenantNotEmptyError,
    TenantRecord,
    UserRecord,
)
from ..problems import Conflict, NotFound, ValidationFailed
from ..registry.names import COMPONENT_PATTERN, MAX_NAME_LENGTH, NAME_RE, TAG_RE
from ..retention import RetentionError, parse_immutable_rules, parse_policy

MAX_COMPONENT_LENGTH = 64
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_DISPLAY_NAME_LENGTH = 200
MAX_QUOTA_BYTES = 2 ** 63 - 1
MAX_ROBOT_PATTERNS = 100
MAX_ROBOT_DAYS = 3650
ROBOT_ACTIONS = (PULL, PUSH, DELETE)
ROLES = tuple(r.value for r in Role)
# One segment of a robot's repository pattern: a name component in which the * and ? wildcards
# may stand where letters and digits do, so `.`, `..`, an empty segment or a separator at
# either end (which no name has) is refused rather than kept as a pattern that matches nothing.
ROBOT_SEGMENT_RE = re.compile(r"[a-z0-9*?]+(?:(?:[._]|__|-+)[a-z0-9*?]+)*")

_COMPONENT_RE = re.compile(COMPONENT_PATTERN)


# Field rules -------------------------------------------------------------------------------------
def check_component(field: str, value: Any) -> str:
    """A tenant, user or robot name: one repository-name component, at most 64 characters."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed.field(field, "must be a non-empty string")
    if len(value) > MAX_COMPONENT_LENGTH or not _COMPONENT_RE.fullmatch(value):
        raise ValidationFailed.field(field, "must be lowercase letters and digits, optionally separated by "
                                            f"'.', '_', '__' or dashes, at most {MAX_COMPONENT_LENGTH} characters")
    return value


def check_password(field: str, value: Any) -> str:
    if not isinstance(value, str) or not MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH:
        raise ValidationFailed.field(field, f"must be a string of {MIN_PASSWORD_LENGTH} to "
                                            f"{MAX_PASSWORD_LENGTH} characters")
    return value


def check_display_name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DISPLAY_NAME_LENGTH:
        raise ValidationFailed.field("display_name", f"must be a string of at most {MAX_DISPLAY_NAME_LENGTH} "
                                                     "characters")
    return value


def check_quota(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA_BYTES:
        raise ValidationFailed.field("quota_bytes", "must be null (no limit) or a non-negative integer")
    return value


def check_role(value: Any) -> str:
    if value not in ROLES:
        raise ValidationFailed.field("role", f"must be one of {', '.join(ROLES)}")
    return value


def is_repository_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def is_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def check_robot_patterns(tenant: str, patterns: Any) -> tuple[str, ...]:
    """Robot repository patterns: each `<tenant>/...`, the tenant spelled out (no wildcard)."""
    if not isinstance(patterns, list | tuple) or not 1 <= len(patterns) <= MAX_ROBOT_PATTERNS:
        raise ValidationFailed.field("repositories", f"must be a list of 1 to {MAX_ROBOT_PATTERNS} "
                                                     "repository names or patterns")
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise ValidationFailed.field(f"repositories/{i}", "must be a non-empty string")
        first, _, rest = pattern.partition("/")
        if first != tenant or not rest:
            raise ValidationFailed.field(f"repositories/{i}", f"must stay inside the tenant: start with "
                                                              f"'{tenant}/'")
        if len(pattern) > MAX_NAME_LENGTH or not all(
                seg == "**" or ROBOT_SEGMENT_RE.fullmatch(seg) for seg in rest.split("/")):
            raise ValidationFailed.field(f"repositories/{i}", "each segment after the tenant must be '**' or a "
                                                              "name component (no '.', '..' or empty segments) "
                                                              "with '*' and '?' wildcards")
    return tuple(dict.fromkeys(patterns))


def check_robot_actions(actions: Any) -> tuple[str, ...]:
    if (not isinstance(actions, list | tuple) or not actions
            or not all(isinstance(a, str) and a in ROBOT_ACTIONS for a in actions)):
        raise ValidationFailed.field("actions", f"must be a non-empty subset of {', '.join(ROBOT_ACTIONS)}")
    return tuple(a for a in ROBOT_ACTIONS if a in actions)


def check_expiry_days(days: Any) -> float | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_ROBOT_DAYS:
        raise ValidationFailed.field("expires_in_days", f"must be a number of days in (0, {MAX_ROBOT_DAYS}]")
    return float(days)


def policy_pointer(path: str) -> str:
    """A RetentionError's field path (``overrides[1].rules[0].keep``) as a JSON Pointer fragment
    (``#/overrides/1/rules/0/keep``), as the admin API's other field errors are given."""
    parts = [p for p in re.split(r"[.\[\]]+", path) if p]
    return "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


# Changes, each with its audit row -----------------------------------------------------------------
class Administration:
    """Changes made by `actor` (a username, or "cli"), each written to the audit log.

    `upstreams` are the config file's pull-through cache upstreams (config.proxy.upstreams;
    those created through the API are read from the store): no tenant may take one's name."""

    def __init__(self, store, auth, actor: str, *, upstreams: Iterable[Any]):
        # Both are today's one metadata store. The metadata split (docs/design/metadata-split.md
        # §8, steps 4d to 6) makes `identity` the identity store, and gives what `metadata`
        # answers (repositories, tags, quota usage, stored upstreams, GC runs) to the Registry
        # facade and the cache store.
        self.identity = store
        self.metadata = store
        self.auth = auth
        self.actor = actor
        self.config_upstreams = tuple(upstreams)

    async def audit(self, action: str, target: str, detail: Mapping[str, Any] | None = None, *,
                    tenant: str | None = None) -> None:
        """Append an audit row by the actor (the changes below write their own)."""
        await self.identity.audit(self.actor, action, target,
                                  json.dumps(dict(detail), sort_keys=True) if detail is not None else None,
                                  tenant=tenant)

    # Users -----------------------------------------------------------------------------------------
    async def create_user(self, username: str, password: str, *, is_admin: bool = False) -> UserRecord:
        check_component("username", username)
        check_password("password", password)
        hashed = await self.auth.hash_password(password)
        if not await self.identity.create_user(username, hashed, is_admin=is_admin):
            raise Conflict(f"user {username!r} already exists")
        await self.audit("user.create", username, {"is_admin": is_admin})
        return await self.account(username)

    async def account(self, username: str) -> UserRecord:
        user = await self.identity.get_user(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        return user

    async def list_users(self, limit: int, after: str | None) -> list[UserRecord]:
        """Users in name order after `after`."""
        return await self.identity.list_users(limit, after)

    async def refresh_tokens(self, username: str, limit: int, after: str | None) -> list[RefreshTokenRecord]:
        """The live refresh tokens of `username` in id order after `after`."""
        return await self.identity.list_refresh_tokens(username, limit, after)

    async def update_user(self, username: str, changes: Mapping[str, bool]) -> UserRecord:
        if username == self.actor and (changes.get("is_admin") is False or changes.get("disabled") is True):
            raise Conflict("you cannot take away your own admin rights or disable your own account")
        user = await self.identity.update_user(username, changes)
        if user is None:
            raise NotFound(f"no user {username!r}")
        await self.audit("user.update", username, changes)
        return user

    async def delete_user(self, username: str) -> None:
        if username == self.actor:
            raise Conflict("you cannot delete your own account")
        if not await self.identity.delete_user(username):
            raise NotFound(f"no user {username!r}")
        await self.audit("user.delete", username)

    async def set_password(self, username: str, password: str) -> None:
        check_password("password", password)
        provider = provider_of((await self.account(username)).password_hash)
        if provider is not None:
            # A local password would detach the account from the directory that can take it away.
            raise Conflict(f"user {username!r} signs in through identity provider {provider!r}: its password is "
                           "changed there")
        if not await self.identity.set_password(username, await self.auth.hash_password(password)):
            raise NotFound(f"no user {username!r}")
        await self.audit("user.password", username)

    async def revoke_refresh_tokens(self, username: str, token_id: str | None = None) -> int:
        """Revoke one refresh token of `username` (by its id, the jti), or every one of them."""
        await self.account(username)
        revoked = await self.identity.revoke_refresh_tokens(username, token_id)
        if token_id is not None and not revoked:
            raise NotFound(f"no live refresh token {token_id[:100]!r} of {username!r}")
        await self.audit("user.refresh_tokens.revoke", username,
                         {"id": token_id} if token_id is not None else {"all": True, "revoked": revoked})
        return revoked

    # Tenants ---------------------------------------------------------------------------------------
    async def create_tenant(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> TenantRecord:
        check_component("name", name)
        check_display_name(display_name)
        check_quota(quota_bytes)
        await self._not_an_upstream(name)
        if not await self.identity.create_tenant(name, display_name, quota_bytes):
            raise Conflict(f"tenant {name!r} already exists")
        await self.audit("tenant.create", name, {"display_name": display_name, "quota_bytes": quota_bytes},
                         tenant=name)
        return await self.tenant(name)

    async def _not_an_upstream(self, name: str) -> None:
        """A tenant named like an upstream or one of its aliases would be shadowed by its cache:
        `/v2/<name>/...` routes to the upstream. The stored upstreams are read afresh, not
        from a router's copy that another replica's change may not have reached yet."""
        try:
            stored = await self.metadata.list_upstreams()
        except NotImplementedError:
            stored = []  # a store without managed upstreams
        for upstream in (*self.config_upstreams, *stored):
            if name == upstream.name or name in upstream.aliases:
                which = "the name" if upstream.name == name else "an alias"
                raise Conflict(f"{name!r} is {which} of the pull-through cache upstream {upstream.name!r}: its "
                               "repositories would be the cache's; choose another tenant name")

    async def tenant(self, name: str) -> TenantRecord:
        tenant = await self.identity.get_tenant(name)
        if tenant is None:
            raise NotFound(f"no tenant {name!r}")
        return tenant

    async def list_tenants(self, limit: int, after: str | None, *,
                           only: Collection[str] | None = None) -> list[TenantRecord]:
        """Tenants in name order after `after`; with `only`, just those of these names."""
        return await self.identity.list_tenants(limit, after, only=only)

    async def tenant_usage(self, tenant: str) -> int:
        """The bytes a tenant's quota counts: its distinct blobs and manifests, each digest once."""
        return await self.metadata.tenant_usage(tenant)

    async def tenant_members(self, tenant: str, limit: int, after: str | None) -> list[MemberRecord]:
        """Members of `tenant` in username order after `after`."""
        return await self.identity.tenant_members(tenant, limit, after)

    async def update_tenant(self, name: str, changes: Mapping[str, Any]) -> TenantRecord:
        if "display_name" in changes:
            check_display_name(changes["display_name"])
        if "quota_bytes" in changes:
            check_quota(changes["quota_bytes"])
        tenant = await self.identity.update_tenant(name, changes)
        if tenant is None:
            raise NotFound(f"no tenant {name!r}")
        await self.audit("tenant.update", name, changes, tenant=name)
        return tenant

    async def delete_tenant(self, name: str) -> None:
        try:
            deleted = await self.identity.delete_tenant(name)
        except TenantNotEmptyError:
            raise Conflict(f"tenant {name!r} still has repositories; delete them first") from None
        if not deleted:
            raise NotFound(f"no tenant {name!r}")
        await self.audit("tenant.delete", name, tenant=name)

    async def set_member(self, tenant: str, username: str, role: str | None) -> None:
        """Give `username` `role` in `tenant`; None removes the membership."""
        if role is not None:
            check_role(role)
        await self.tenant(tenant)
        await self.account(username)
        if role is None and tenant not in await self.identity.memberships(username):
            raise NotFound(f"{username!r} is not a member of {tenant!r}")
        if not await self.identity.set_membership(tenant, username, role):
            raise NotFound("the tenant or the user is gone")
        await self.audit("tenant.member", f"{tenant}/{username}", {"role": role}, tenant=tenant)

    # Robots ----------------------------------------------------------------------------------------
    async def create_robot(self, tenant: str, name: str, repositories: Iterable[str], actions: Iterable[str],
                           expires_in_days: float | None = None) -> tuple[RobotRecord, str]:
        """Create a robot account; returns it with its secret, which is never stored or shown again."""
        check_component("name", name)
        patterns = check_robot_patterns(tenant, list(repositories))
        granted = check_robot_actions(list(actions))
        days = check_expiry_days(expires_in_days)
        await self.tenant(tenant)
        secret = generate_secret(32)
        now = time.time()
        record = RobotRecord(tenant, name, hash_secret(secret), patterns, granted,
                             now + days * 86400 if days is not None else None, False, now)
        if not await self.identity.create_robot(record):
            raise Conflict(f"robot {name!r} already exists in {tenant!r}")
        await self.audit("robot.create", robot_account(tenant, name),
                         {"repositories": list(patterns), "actions": list(granted), "expires_at": record.expires_at},
                         tenant=tenant)
        return record, secret

    async def robot(self, tenant: str, name: str) -> RobotRecord:
        robot = await self.identity.get_robot(tenant, name)
        if robot is None:
            raise NotFound(f"no robot {name!r} in tenant {tenant!r}")
        return robot

    async def list_robots(self, tenant: str, limit: int, after: str | None) -> list[RobotRecord]:
        """Robots of `tenant` in name order after `after`."""
        return await self.identity.list_robots(tenant, limit, after)

    async def revoke_robot(self, tenant: str, name: str) -> RobotRecord:
        if not await self.identity.revoke_robot(tenant, name):
            raise NotFound(f"no robot {name!r} in tenant {tenant!r}")
        await self.audit("robot.revoke", robot_account(tenant, name), tenant=tenant)
        return await self.robot(tenant, name)

    async def delete_robot(self, tenant: str, name: str) -> None:
        if not await self.identity.delete_robot(tenant, name):
            raise NotFound(f"no robot {name!r} in tenant {tenant!r}")
        await self.audit("robot.delete", robot_account(tenant, name), tenant=tenant)

    # Repositories ----------------------------------------------------------------------------------
    async def repository(self, name: str) -> RepositorySummary:
        summary = await self.metadata.repository_summary(name) if is_repository_name(name) else None
        if summary is None:
            raise NotFound(f"no repository {name!r}")
        return summary

    async def repository_visibility(self, name: str) -> bool:
        """Whether repository `name` exists and is public."""
        return name in await self.metadata.public_repositories([name])

    async def repository_summaries(self, tenant: str, limit: int,
                                   after: str | None) -> list[RepositorySummary]:
        """Every repository `<tenant>/...` in name order after `after`."""
        return await self.metadata.repository_summaries(tenant, limit, after)

    async def tag_page(self, repository: str, limit: int, after: str | None) -> list[TagRecord]:
        """Tags of `repository` with their digests, in name order after `after`."""
        tags = await self.metadata.list_tag_records(repository, limit, after)
        if tags is None:
            raise NotFound(f"no repository {repository!r}")
        return tags

    async def tag_times(self, tenant: str) -> dict[tuple[str, str], tuple[float, float | None]]:
        """(repository, tag) -> (last push, last pull or None) of every tag of the tenant."""
        tags, _ = await self.metadata.retention_inventory(tenant)
        return {(t.repository, t.tag): (t.pushed_at, t.pulled_at) for t in tags}

    async def repository_overview(self, tenant: str, limit: int = 500) -> list[
            tuple[RepositorySummary, float | None, float | None]]:
        """The tenant's first `limit` repositories with the time a tag was last set and last pulled
        (None: never), for the web console's repository list."""
        last: dict[str, tuple[float | None, float | None]] = {}
        for (repository, _), (pushed, pulled) in (await self.tag_times(tenant)).items():
            was_pushed, was_pulled = last.get(repository, (None, None))
            last[repository] = (max(pushed, was_pushed or 0),
                                max(pulled or 0, was_pulled or 0) or None)
        return [(s, *last.get(s.name, (None, None))) for s in await self.repository_summaries(tenant, limit, None)]

    async def set_repository_public(self, name: str, public: bool, *, must_exist: bool = True) -> None:
        """Make a repository public (anonymous pull) or private; the CLI may do so before its first push."""
        if must_exist:
            await self.repository(name)
        elif not is_repository_name(name):
            raise ValidationFailed.field("name", "not a valid repository name")
        await self.metadata.set_repository_public(name, public)
        await self.audit("repo.visibility", name, {"visibility": "public" if public else "private"},
                         tenant=tenant_of(name))

    async def delete_repository(self, name: str) -> None:
        """Delete a repository's manifests, tags and blob links; the blobs are left for GC. 409
        while it holds an immutable tag."""
        try:
            if not is_repository_name(name) or not await self.metadata.delete_repository(name):
                raise NotFound(f"no repository {name!r}")
        except TagImmutableError as exc:
            raise Conflict(f"repository {name} holds an immutable tag: {exc}") from None
        await self.audit("repo.delete", name, tenant=tenant_of(name))

    async def delete_tag(self, repository: str, tag: str) -> None:
        try:
            if (not is_repository_name(repository) or not is_tag(tag)
                    or not await self.metadata.delete_tag(repository, tag)):
                raise NotFound(f"no tag {tag!r} in repository {repository!r}")
        except TagImmutableError as exc:
            raise Conflict(str(exc)) from None
        await self.audit("tag.delete", f"{repository}:{tag}", tenant=tenant_of(repository))

    # Retention policies (docs/retention.md) ----------------------------------------------------------
    async def retention_policy(self, tenant: str) -> StoredPolicy:
        await self.tenant(tenant)
        stored = await self.metadata.retention_policy(tenant)
        if stored is None:
            raise NotFound(f"tenant {tenant!r} has no retention policy (nothing is deleted)")
        return stored

    async def set_retention_policy(self, tenant: str, document: Any) -> StoredPolicy:
        """Validate the document (hub/retention/policy.py) and store it in its normal form, with its
        audit row in the same transaction; 422 naming every bad field otherwise."""
        await self.tenant(tenant)
        try:
            policy = parse_policy(document)
        except RetentionError as exc:
            raise ValidationFailed(f"invalid retention policy: {exc}"[:2000], errors=[
                {"detail": detail, "pointer": policy_pointer(path)} for path, detail in exc.errors.items()][:100]
            ) from None
        return await self.metadata.set_retention_policy(tenant, policy.to_dict(), self.actor)

    async def delete_retention_policy(self, tenant: str) -> None:
        await self.tenant(tenant)
        if not await self.metadata.delete_retention_policy(tenant, self.actor):
            raise NotFound(f"tenant {tenant!r} has no retention policy")

    # Immutable-tag rules (docs/retention.md) --------------------------------------------------------
    async def immutable_tag_rules(self, tenant: str) -> StoredImmutableRules:
        await self.tenant(tenant)
        stored = await self.metadata.immutable_rules(tenant)
        if stored is None:
            raise NotFound(f"tenant {tenant!r} has no immutable-tag rules (every tag may be moved or deleted)")
        return stored

    async def set_immutable_tag_rules(self, tenant: str, document: Any) -> StoredImmutableRules:
        """Validate the rules (hub/retention/immutable.py) and store them in their normal form, with
        their audit row (the rules before and after) in the same transaction; 422 naming every bad
        field otherwise."""
        await self.tenant(tenant)
        try:
            rules = parse_immutable_rules(document)
        except RetentionError as exc:
            raise ValidationFailed(f"invalid immutable-tag rules: {exc}"[:2000], errors=[
                {"detail": detail, "pointer": policy_pointer(path)} for path, detail in exc.errors.items()][:100]
            ) from None
        return await self.metadata.set_immutable_rules(tenant, {"rules": [r.to_dict() for r in rules]}, self.actor)

    async def delete_immutable_tag_rules(self, tenant: str) -> None:
        await self.tenant(tenant)
        if not await self.metadata.delete_immutable_rules(tenant, self.actor):
            raise NotFound(f"tenant {tenant!r} has no immutable-tag rules")

    # Audit log and GC history ------------------------------------------------------------------------
    async def audit_entries(self, limit: int, before_id: int | None, *,
                            tenants: Collection[str] | None = None) -> list[AuditRecord]:
        """Audit rows newest first, ids below `before_id`; with `tenants`, only rows concerning those."""
        return await self.identity.audit_entries(limit, before_id, tenants=tenants)

    async def gc_runs(self, limit: int, tenant: str | None, *,
                      before: int | None = None) -> list[GcRunRecord]:
        """The GC run history, newest first, ids below `before` (with `tenant`: its runs only)."""
        return await self.metadata.gc_runs(limit, tenant, before=before)
