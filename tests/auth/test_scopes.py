"""Docker token scope grammar: tables plus property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auth.scopes import (
    ResourceScope,
    format_challenge_scope,
    parse_scope,
    parse_scopes,
    split_scopes,
)


def rs(type_: str, name: str, *actions: str) -> ResourceScope:
    return ResourceScope(type_, name, frozenset(actions))


GOOD = [
    ("repository:team/app:pull", rs("repository", "team/app", "pull")),
    ("repository:team/app:pull,push", rs("repository", "team/app", "pull", "push")),
    ("repository:team/app:push,pull", rs("repository", "team/app", "pull", "push")),
    ("repository:team/app:delete", rs("repository", "team/app", "delete")),
    ("repository:team/app:*", rs("repository", "team/app", "pull", "push", "delete")),
    ("repository:team/app:pull,*", rs("repository", "team/app", "pull", "push", "delete")),
    ("repository:localhost:5000/team/app:pull,push",
     rs("repository", "localhost:5000/team/app", "pull", "push")),
    ("repository:a:b:c:pull", rs("repository", "a:b:c", "pull")),
    ("repository:team/app:pull,bogus", rs("repository", "team/app", "pull")),
    ("repository:team/app:pull,,push", rs("repository", "team/app", "pull", "push")),
    ("repository:team/app:pull,pull", rs("repository", "team/app", "pull")),
    ("repository:x:pull", rs("repository", "x", "pull")),
    ("registry:catalog:*", rs("registry", "catalog", "*")),
    ("registry:catalog:*,pull", rs("registry", "catalog", "*")),
]

DROPPED = [
    "",
    "repository",
    "repository:team/app",
    "repository:team/app:",
    "repository::pull",
    ":team/app:pull",
    "repository:team/app:bogus",
    "repository:team/app:PULL",
    "Repository:team/app:pull",
    "unknown:team/app:pull",
    "registry:catalog:pull",
    "registry:other:*",
    "registry:catalog:",
    "repository:team app:pull",
    "repository:team\x00app:pull",
    "repository:" + "a" * 2000 + ":pull",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_parse_good(raw, expected):
    assert parse_scope(raw) == expected


@pytest.mark.parametrize("raw", DROPPED)
def test_parse_dropped(raw):
    assert parse_scope(raw) is None


@pytest.mark.parametrize("raw", [None, 1, b"repository:a/b:pull"])
def test_parse_non_str(raw):
    assert parse_scope(raw) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "claim"),
    [
        (rs("repository", "t/a", "push", "pull"), {"type": "repository", "name": "t/a", "actions": ["pull", "push"]}),
        (rs("repository", "t/a", "push", "pull", "delete"),
         {"type": "repository", "name": "t/a", "actions": ["delete", "pull", "push"]}),
        (rs("registry", "catalog", "*"), {"type": "registry", "name": "catalog", "actions": ["*"]}),
    ],
)
def test_claim_roundtrip(scope, claim):
    assert scope.to_claim() == claim
    assert ResourceScope.from_claim(claim) == scope


@pytest.mark.parametrize(
    "claim",
    [
        None,
        [],
        {},
        {"type": "repository", "name": "t/a"},
        {"type": "repository", "name": "t/a", "actions": "pull"},
        {"type": "repository", "name": "t/a", "actions": [1]},
        {"type": "repository", "name": 5, "actions": ["pull"]},
        {"type": "repository", "name": "t/a", "actions": []},
        {"type": "nope", "name": "t/a", "actions": ["pull"]},
    ],
)
def test_from_claim_malformed(claim):
    assert ResourceScope.from_claim(claim) is None  # type: ignore[arg-type]


def test_parse_scopes_merges_and_keeps_order():
    got = parse_scopes([
        "repository:b/x:pull",
        "repository:a/y:push",
        "repository:b/x:push",
        "garbage",
        "registry:catalog:*",
        "repository:b/x:pull",
    ])
    assert got == [
        rs("repository", "b/x", "pull", "push"),
        rs("repository", "a/y", "push"),
        rs("registry", "catalog", "*"),
    ]


def test_split_scopes_reports_dropped_and_splits_on_spaces():
    scopes, dropped = split_scopes(["repository:a/b:pull repository:c/d:push  bad:x", "repository:a/b:nope", 7])
    assert scopes == [rs("repository", "a/b", "pull"), rs("repository", "c/d", "push")]
    assert dropped == ["bad:x", "repository:a/b:nope", "7"]


def test_parse_scopes_empty():
    assert parse_scopes([]) == []
    assert parse_scopes([""]) == []


@pytest.mark.parametrize(
    ("name", "actions", "expected"),
    [
        ("team/app", ["pull"], "repository:team/app:pull"),
        ("team/app", ["push", "pull"], "repository:team/app:pull,push"),
        ("team/app", {"delete", "push", "pull"}, "repository:team/app:pull,push,delete"),
        ("localhost:5000/a/b", ("pull",), "repository:localhost:5000/a/b:pull"),
    ],
)
def test_format_challenge_scope(name, actions, expected):
    assert format_challenge_scope(name, actions) == expected
    assert parse_scope(expected) == rs("repository", name, *actions)


def test_str_is_parseable():
    scope = rs("repository", "h:1/t/a", "delete", "pull")
    assert str(scope) == "repository:h:1/t/a:pull,delete"
    assert parse_scope(str(scope)) == scope


# --- properties -------------------------------------------------------------

# Scope parsing only cares that names are printable and space-free; the full
# name grammar lives in the registry layer. Include ':' to stress the split.
_component = st.text("abz09._-:", min_size=1, max_size=12)
_names = st.builds(
    lambda host, parts: (host + "/" if host else "") + "/".join(parts),
    st.one_of(st.just(""), st.builds(lambda h, p: f"{h}:{p}", _component, st.integers(1, 65535).map(str))),
    st.lists(_component, min_size=1, max_size=4),
)
_actions = st.sets(st.sampled_from(["pull", "push", "delete"]), min_size=1)


@given(_names, _actions)
def test_roundtrip_property(name, actions):
    scope = ResourceScope("repository", name, frozenset(actions))
    assert parse_scope(str(scope)) == scope
    assert parse_scope(format_challenge_scope(name, actions)) == scope
    assert ResourceScope.from_claim(scope.to_claim()) == scope


@given(st.text(max_size=300))
def test_parse_never_raises(text):
    result = parse_scope(text)
    assert result is None or (result.actions and result.type in {"repository", "registry"})


@given(st.lists(st.text(max_size=60), max_size=8))
def test_split_accounts_for_every_part(items):
    scopes, dropped = split_scopes(items)
    parts = [p for item in items for p in item.split()]
    assert len(dropped) + sum(1 for p in parts if parse_scope(p) is not None) == len(parts)
    assert len({(s.type, s.name) for s in scopes}) == len(scopes)


@given(st.lists(st.tuples(st.sampled_from(["a/b", "c/d", "h:5/e"]), _actions), max_size=10))
def test_merge_is_union(pairs):
    raw = [format_challenge_scope(n, a) for n, a in pairs]
    merged = {s.name: s.actions for s in parse_scopes(raw)}
    expected: dict[str, set[str]] = {}
    for n, a in pairs:
        expected.setdefault(n, set()).update(a)
    assert merged == {n: frozenset(a) for n, a in expected.items()}
