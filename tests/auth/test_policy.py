"""Permission policy: the role x action matrix, robots, cross-tenant rules, grant() and management."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auth.policy import (
    Manage,
    Principal,
    PrincipalKind,
    RepositoryInfo,
    RobotGrant,
    Role,
    allowed_actions,
    can_manage_tenant,
    can_read,
    grant,
    pattern_matches,
    requested_repository_names,
    tenant_of,
)
from auth.scopes import ResourceScope, parse_scopes

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def robot(patterns=("team/ci/*",), actions=("pull", "push"), expires_at=NOW + DAY, revoked=False, tenant="team"):
    grant_ = RobotGrant(tenant, tuple(patterns), frozenset(actions), expires_at, revoked)
    return Principal.for_robot("team+ci", grant_)


PRINCIPALS = {
    "anonymous": Principal.anonymous(),
    "outsider": Principal.user("olga"),
    "guest": Principal.user("gus", {"team": Role.GUEST}),
    "developer": Principal.user("dev", {"team": "developer"}),
    "maintainer": Principal.user("max", {"team": Role.MAINTAINER}),
    "admin": Principal.user("ada", {"team": Role.ADMIN}),
    "admin of other": Principal.user("oscar", {"other": Role.ADMIN}),
    "platform admin": Principal.user("root", is_platform_admin=True),
    "robot": robot(),
    "robot, all tenant, pull only": robot(patterns=("**",), actions=("pull",)),
    "robot, expired": robot(expires_at=NOW),
    "robot, revoked": robot(revoked=True),
    "robot, no expiry": robot(expires_at=None, actions=("pull", "push", "delete", "bogus")),
}

REPOS = {
    "team/app": RepositoryInfo.for_name("team/app"),
    "team/pub": RepositoryInfo.for_name("team/pub", public=True),
    "team/ci/build": RepositoryInfo.for_name("team/ci/build"),
    "team/ci/build/x": RepositoryInfo.for_name("team/ci/build/x"),
    "other/app": RepositoryInfo.for_name("other/app"),
    "other/pub": RepositoryInfo.for_name("other/pub", public=True),
    "alpine": RepositoryInfo.for_name("alpine"),
    "alpine public": RepositoryInfo.for_name("alpine", public=True),
}

_ = ""
P, PP, PPD = "pull", "pull,push", "pull,push,delete"
# columns:       team/app team/pub team/ci/build team/ci/build/x other/app other/pub alpine alpine-public
MATRIX = {
    "anonymous":                    (_,   P,   _,   _,   _,   P,   _,   P),
    "outsider":                     (_,   P,   _,   _,   _,   P,   _,   P),
    "guest":                        (P,   P,   P,   P,   _,   P,   _,   P),
    "developer":                    (PP,  PP,  PP,  PP,  _,   P,   _,   P),
    "maintainer":                   (PPD, PPD, PPD, PPD, _,   P,   _,   P),
    "admin":                        (PPD, PPD, PPD, PPD, _,   P,   _,   P),
    "admin of other":               (_,   P,   _,   _,   PPD, PPD, _,   P),
    "platform admin":               (PPD, PPD, PPD, PPD, PPD, PPD, PPD, PPD),
    "robot":                        (_,   P,   PP,  _,   _,   P,   _,   P),
    "robot, all tenant, pull only": (P,   P,   P,   P,   _,   P,   _,   P),
    "robot, expired":               (_,   _,   _,   _,   _,   _,   _,   _),
    "robot, revoked":               (_,   _,   _,   _,   _,   _,   _,   _),
    "robot, no expiry":             (_,   P,   PPD, _,   _,   P,   _,   P),
}
CASES = [
    (who, repo, set(expected.split(",")) - {""})
    for who, row in MATRIX.items()
    for repo, expected in zip(REPOS, row, strict=True)
]


def test_matrix_is_complete():
    assert set(MATRIX) == set(PRINCIPALS)


@pytest.mark.parametrize(("who", "repo", "expected"), CASES, ids=[f"{w} @ {r}" for w, r, _ in CASES])
def test_role_action_matrix(who, repo, expected):
    principal, info = PRINCIPALS[who], REPOS[repo]
    assert allowed_actions(principal, info, NOW) == expected
    assert can_read(principal, info, NOW) is ("pull" in expected)


@pytest.mark.parametrize(
    ("who", "tenant", "expected"),
    [
        ("admin", "team", True),
        ("admin", "other", False),
        ("admin of other", "other", True),
        ("admin of other", "team", False),
        ("platform admin", "team", True),
        ("platform admin", "anything", True),
        ("maintainer", "team", False),
        ("developer", "team", False),
        ("guest", "team", False),
        ("outsider", "team", False),
        ("anonymous", "team", False),
        ("robot", "team", False),
        ("robot, no expiry", "team", False),
    ],
)
@pytest.mark.parametrize("what", list(Manage))
def test_can_manage_tenant(who, tenant, expected, what):
    assert can_manage_tenant(PRINCIPALS[who], tenant, what) is expected
    assert can_manage_tenant(PRINCIPALS[who], tenant, what.value) is expected


@pytest.mark.parametrize("what", ["billing", "", "*"])
def test_can_manage_unknown_thing_is_denied(what):
    assert can_manage_tenant(PRINCIPALS["platform admin"], "team", what) is False


def test_robot_expiry_boundary():
    r = robot(expires_at=NOW + timedelta(seconds=1))
    repo = REPOS["team/ci/build"]
    assert allowed_actions(r, repo, NOW) == {"pull", "push"}
    assert allowed_actions(r, repo, NOW + timedelta(seconds=1)) == set()


def test_robot_cannot_leave_its_tenant_even_with_wide_patterns():
    r = robot(patterns=("**", "other/*", "*/app"), actions=("pull", "push", "delete"))
    assert allowed_actions(r, REPOS["other/app"], NOW) == set()
    assert allowed_actions(r, REPOS["team/app"], NOW) == {"pull", "push", "delete"}


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("team/app", "team/app", True),
        ("team/app", "team/app2", False),
        ("team/app", "team/ap", False),
        ("team/ci/*", "team/ci/build", True),
        ("team/ci/*", "team/ci", False),
        ("team/ci/*", "team/ci/build/x", False),
        ("team/ci/**", "team/ci/build/x", True),
        ("team/ci/**", "team/ci/build", True),
        ("team/**/app", "team/app", True),
        ("team/**/app", "team/a/b/app", True),
        ("team/**/app", "team/a/b/app2", False),
        ("team/*-svc", "team/auth-svc", True),
        ("team/*-svc", "team/auth-svc/x", False),
        ("team/app-?", "team/app-1", True),
        ("team/app-?", "team/app-12", False),
        ("team/a*b*c", "team/axxbyyc", True),
        ("team/a*b*c", "team/axxbyy", False),
        ("team/[ab]", "team/a", False),  # no character classes: literal
        ("team/.*", "team/xyz", False),  # no regex: literal dot
        ("team/.*", "team/.hidden", True),
        ("*", "team", True),
        ("*", "team/app", False),
        ("**", "team/app/x", True),
        ("", "team/app", False),
    ],
)
def test_pattern_matches(pattern, name, expected):
    assert pattern_matches(pattern, name) is expected


def test_pattern_matching_is_not_exponential():
    pattern = "team/" + "a*" * 40 + "b"
    name = "team/" + "a" * 250
    assert pattern_matches(pattern, name) is False  # would take ages with a backtracking regex


@pytest.mark.parametrize(
    ("name", "tenant"),
    [("team/app", "team"), ("team/a/b/c", "team"), ("docker.io/library/nginx", "docker.io"),
     ("alpine", None), ("", None), ("/app", None), ("team/", None)],
)
def test_tenant_of(name, tenant):
    assert tenant_of(name) == tenant


def test_repository_info_must_match_tenant():
    assert RepositoryInfo("team/app", "team").tenant == "team"
    with pytest.raises(ValueError):
        RepositoryInfo("team/app", "other")


def test_principal_invariants():
    with pytest.raises(ValueError):
        Principal(PrincipalKind.ROBOT, "r")
    with pytest.raises(ValueError):
        Principal(PrincipalKind.USER, "u", robot=RobotGrant("t", ("t/*",), frozenset({"pull"})))
    with pytest.raises(ValueError):
        Principal(PrincipalKind.ANONYMOUS, is_platform_admin=True)
    with pytest.raises(ValueError):
        Principal.user("u", {"team": "owner"})


def test_principal_memberships_are_normalised_and_read_only():
    source = {"team": "admin"}
    p = Principal(PrincipalKind.USER, "u", memberships=source)  # type: ignore[dict-item]
    source["other"] = "admin"
    assert dict(p.memberships) == {"team": Role.ADMIN}
    assert p.memberships["team"] is Role.ADMIN
    assert can_manage_tenant(p, "team", Manage.ROBOTS)
    with pytest.raises(TypeError):
        p.memberships["other"] = Role.ADMIN  # type: ignore[index]


# --- grant ------------------------------------------------------------------------

STORE = {r.name: r for r in REPOS.values() if r is not REPOS["alpine"]}  # the stored alpine is public


def do_grant(who: str, *scopes: str) -> dict[str, set[str]]:
    got = grant(PRINCIPALS[who], parse_scopes(list(scopes)), STORE.get, NOW)
    return {f"{s.type}:{s.name}": set(s.actions) for s in got}


@pytest.mark.parametrize(
    ("who", "scopes", "expected"),
    [
        ("developer", ["repository:team/app:pull,push,delete"], {"repository:team/app": {"pull", "push"}}),
        ("developer", ["repository:team/app:*"], {"repository:team/app": {"pull", "push"}}),
        ("guest", ["repository:team/app:push"], {}),
        ("admin", ["repository:other/app:pull", "repository:other/pub:pull,push"],
         {"repository:other/pub": {"pull"}}),
        ("anonymous", ["repository:team/pub:pull,push", "registry:catalog:*"], {"repository:team/pub": {"pull"}}),
        ("outsider", ["registry:catalog:*"], {"registry:catalog": {"*"}}),
        ("robot", ["registry:catalog:*", "repository:team/ci/new:push"],
         {"registry:catalog": {"*"}, "repository:team/ci/new": {"push"}}),
        ("robot, expired", ["registry:catalog:*", "repository:team/pub:pull"], {}),
        # A repository that does not exist yet: a private repository of the tenant its name implies.
        ("developer", ["repository:team/brand-new:push,pull"], {"repository:team/brand-new": {"pull", "push"}}),
        ("developer", ["repository:other/brand-new:push"], {}),
        ("admin", ["repository:alpine:pull,push"], {"repository:alpine": {"pull"}}),
        ("platform admin", ["repository:alpine:push", "repository:newtenant/x:delete"],
         {"repository:alpine": {"push"}, "repository:newtenant/x": {"delete"}}),
        ("maintainer", ["repository:localhost:5000/team/app:pull"], {}),
        ("maintainer", [], {}),
    ],
)
def test_grant(who, scopes, expected):
    assert do_grant(who, *scopes) == expected


def test_grant_ignores_lookup_returning_another_repository():
    public_other = RepositoryInfo.for_name("other/pub", public=True)
    got = grant(PRINCIPALS["outsider"], parse_scopes(["repository:other/secret:pull"]), lambda _: public_other, NOW)
    assert got == []


def test_requested_repository_names():
    scopes = parse_scopes(["repository:a/b:pull", "registry:catalog:*", "repository:c/d:push"])
    assert requested_repository_names(scopes) == ["a/b", "c/d"]


# --- properties ------------------------------------------------------------------------

_names = st.sampled_from(["team/app", "team/pub", "team/ci/build", "other/app", "other/pub", "alpine", "x/y"])
_scopes = st.builds(lambda n, a: ResourceScope("repository", n, frozenset(a)), _names,
                    st.sets(st.sampled_from(["pull", "push", "delete"]), min_size=1))


@given(st.sampled_from(sorted(PRINCIPALS)), st.lists(_scopes, max_size=6))
def test_grant_is_within_requested_and_allowed(who, requested):
    principal = PRINCIPALS[who]
    for scope in grant(principal, requested, STORE.get, NOW):
        assert scope.actions
        asked = set().union(*(r.actions for r in requested if r.name == scope.name))
        assert scope.actions <= asked
        repo = STORE.get(scope.name) or RepositoryInfo.for_name(scope.name)
        assert scope.actions <= allowed_actions(principal, repo, NOW)


@given(st.sampled_from(sorted(PRINCIPALS)))
def test_nobody_but_platform_admin_touches_other_tenants_private_repos(who):
    assert who == "admin of other" or who == "platform admin" or not allowed_actions(
        PRINCIPALS[who], REPOS["other/app"], NOW)
