"""The catalog's scope: what a store filters a page by must be exactly what can_read allows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from auth.policy import (
    CatalogScope,
    Principal,
    RepositoryInfo,
    RobotGrant,
    can_read,
    catalog_scope,
    pattern_matches,
    pattern_regex,
    tenant_of,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
name_segment = st.sampled_from(["a", "b", "ab", "ci", "x.y", "a-b", "a_b", "ba"])
pattern_segment = st.sampled_from(["a", "b", "*", "?", "**", "a*", "*b", "a?", "x.y", "a-b", "*.*", "a_b", "?*"])


@given(st.lists(pattern_segment, min_size=1, max_size=5), st.lists(name_segment, min_size=1, max_size=6))
def test_pattern_regex_matches_exactly_what_pattern_matches_does(pattern, name):
    pattern, name = "/".join(pattern), "/".join(name)
    assert bool(re.fullmatch(pattern_regex(pattern), "/" + name)) == pattern_matches(pattern, name)


def _listed(scope: CatalogScope | None, repo: RepositoryInfo) -> bool:
    """The stores' query, in Python."""
    if scope is None:
        return True
    in_robot_tenant = scope.robot_tenant is not None and tenant_of(repo.name) == scope.robot_tenant
    return ((scope.public and repo.public) or (repo.tenant is not None and repo.tenant in scope.tenants)
            or (in_robot_tenant and any(re.search(p, "/" + repo.name) for p in scope.robot_patterns)))


PRINCIPALS = [
    Principal.anonymous(),
    Principal.user("alice", {"team": "guest", "x": "developer"}),
    Principal.user("nobody"),
    Principal.user("root", is_platform_admin=True),
    Principal.for_robot("robot$team+ci", RobotGrant("team", ("team/ci/*", "team/a.b/**"), frozenset({"pull"}))),
    Principal.for_robot("robot$team+push", RobotGrant("team", ("team/**",), frozenset({"push"}))),
    Principal.for_robot("robot$team+old", RobotGrant("team", ("team/**",), frozenset({"pull"}),
                                                     expires_at=NOW - timedelta(seconds=1))),
]
NAMES = ["alpine", "team", "team/a", "team/ci/app", "team/ci/app/deep", "team/a.b", "team/a.b/c/d", "teamx/ci/a",
         "x/y", "other/ci/app", "team/cia"]


def test_catalog_scope_agrees_with_can_read():
    for principal in PRINCIPALS:
        scope = catalog_scope(principal, NOW)
        for name in NAMES:
            for public in (False, True):
                repo = RepositoryInfo(name, tenant_of(name), public)
                assert _listed(scope, repo) == can_read(principal, repo, NOW), (principal.name, name, public)
