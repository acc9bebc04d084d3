"""The admin API's questions to auth.policy, as pure tables (the HTTP matrix is in test_permissions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auth import policy
from auth.policy import Principal, RepositoryInfo, RobotGrant, Role

NOW = datetime(2025, 6, 1, tzinfo=UTC)
WHO = {
    "anonymous": Principal.anonymous(),
    "outsider": Principal.user("olga"),
    "guest": Principal.user("gus", {"team": Role.GUEST}),
    "developer": Principal.user("dev", {"team": Role.DEVELOPER}),
    "maintainer": Principal.user("max", {"team": Role.MAINTAINER}),
    "admin": Principal.user("ada", {"team": Role.ADMIN, "side": Role.GUEST}),
    "platform admin": Principal.user("root", is_platform_admin=True),
    "robot": Principal.for_robot("robot$team+ci", RobotGrant("team", ("team/**",), frozenset({"pull", "delete"}))),
    "expired robot": Principal.for_robot("robot$team+old", RobotGrant("team", ("team/**",), frozenset({"pull"}),
                                                                      NOW - timedelta(days=1))),
}
APP = RepositoryInfo.for_name("team/app")

#            api   platform view(team) admin(team/app) delete(team/app) audit audit(team) audit(side)
TABLE = {
    "anonymous":      (False, False, False, False, False, False, False, False),
    "outsider":       (True, False, False, False, False, False, False, False),
    "guest":          (True, False, True, False, False, False, False, False),
    "developer":      (True, False, True, False, False, False, False, False),
    "maintainer":     (True, False, True, True, True, False, False, False),
    "admin":          (True, False, True, True, True, True, True, False),
    "platform admin": (True, True, True, True, True, True, True, True),
    # A robot with delete on team/** still gets nothing but its repository actions.
    "robot":          (False, False, False, False, True, False, False, False),
    "expired robot":  (False, False, False, False, False, False, False, False),
}


@pytest.mark.parametrize("who", list(TABLE))
def test_admin_questions(who):
    p = WHO[who]
    got = (policy.can_use_admin_api(p, NOW), policy.can_manage_platform(p), policy.can_view_tenant(p, "team"),
           policy.can_administer_repository(p, APP), policy.can_delete(p, APP, NOW), policy.can_read_audit(p),
           policy.can_read_audit(p, "team"), policy.can_read_audit(p, "side"))
    assert got == TABLE[who]


def test_visible_and_audit_tenants():
    assert policy.visible_tenants(WHO["platform admin"]) is None
    assert policy.visible_tenants(WHO["admin"]) == {"team", "side"}
    assert policy.visible_tenants(WHO["robot"]) == frozenset()
    assert policy.audit_tenants(WHO["platform admin"]) is None
    assert policy.audit_tenants(WHO["admin"]) == {"team"}
    assert policy.audit_tenants(WHO["maintainer"]) == frozenset()


@pytest.mark.parametrize(("who", "username", "allowed", "needs_current"), [
    ("developer", "dev", True, True),
    ("developer", "gus", False, True),
    ("admin", "dev", False, True),
    ("platform admin", "dev", True, False),
    ("platform admin", "root", True, False),
    ("robot", "robot$team+ci", False, True),
    ("anonymous", "", False, True),
])
def test_password_changes(who, username, allowed, needs_current):
    p = WHO[who]
    assert policy.can_set_password(p, username) is allowed
    assert policy.can_view_user(p, username) is allowed
    assert policy.needs_current_password(p, username) is needs_current


def test_single_component_repositories_are_the_platform_admins():
    alpine = RepositoryInfo.for_name("alpine")
    assert not policy.can_administer_repository(WHO["admin"], alpine)
    assert policy.can_administer_repository(WHO["platform admin"], alpine)
