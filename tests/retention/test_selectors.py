"""Selectors of retention and immutable rules: globs, RE2 regexes, semver ranges (hub.retention.selectors)."""

from __future__ import annotations

import pytest

from hub.retention.selectors import Glob, SemverRange, TagSelector, parse_tag_selector, parse_tag_version


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("team/app", "team/app", True),
    ("team/app", "team/app2", False),
    ("team/*", "team/app", True),
    ("team/*", "team/a/b", False),          # `*` never crosses `/` (fnmatch's does)
    ("team/**", "team/a/b", True),
    ("team/**", "team", False),
    ("**", "a/b/c", True),
    ("**/cache", "cache", True),            # `**/` is zero or more folders
    ("**/cache", "x/y/cache", True),
    ("**/cache", "xcache", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("*/app", "team/app", True),
    ("*/app", "x/team/app", False),
    ("t?am/*", "team/x", True),
    ("t?am/*", "t/am/x", False),            # `?` is not `/`
    ("[a-c]*", "beta", True),
    ("[a-c]*", "delta", False),
    ("[!a-c]*", "delta", True),
    ("[^a-c]*", "beta", False),
    ("x[!a]y", "x/y", False),               # a negated class does not match `/` either
    ("v1.*", "v1.2", True),
    ("v1.*", "v1x2", False),                # `.` is literal
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("*-rc*", "v1.0.0-rc.1", True),
    ("a+b", "a+b", True),
    ("a+b", "aab", False),
    ("*a*a*a*a*a*a*a*a*a*b", "a" * 200, False),  # RE2: no backtracking blow-up
])
def test_glob(pattern, text, expected):
    assert Glob.parse(pattern).matches(text) is expected


@pytest.mark.parametrize(("pattern", "message"), [("[abc", "unclosed"), ("a\\", "lone"), ("[a/b]", "/"),
                                                  ("[z-a]", "range")])
def test_bad_globs(pattern, message):
    errors: dict[str, str] = {}
    assert parse_tag_selector({"glob": pattern}, "tags", errors) is None
    assert message in errors["tags.glob"]


def select(doc: dict) -> TagSelector:
    errors: dict[str, str] = {}
    selector = parse_tag_selector(doc, "tags", errors)
    assert selector is not None, errors
    return selector


def test_regex_is_anchored_and_full():
    selector = select({"regex": "sha-[0-9a-f]+"})
    assert selector.matches("sha-abc123")
    assert not selector.matches("xsha-abc123")
    assert not selector.matches("sha-abc123-dirty")
    assert not selector.matches("sha-")
    alternation = select({"regex": "latest|stable"})  # the anchors hold the whole alternation
    assert alternation.matches("stable") and not alternation.matches("latest-x")


@pytest.mark.parametrize(("pattern", "message"), [
    ("(a)\\1", "no backreferences"),
    ("v(?=1)", "no backreferences or lookaround"),
    ("(", "missing )"),
    ("a{1001}", "invalid repetition size"),
])
def test_regexes_re2_refuses_are_validation_errors(pattern, message):
    errors: dict[str, str] = {}
    assert parse_tag_selector({"regex": pattern}, "rules[0].tags", errors) is None
    assert set(errors) == {"rules[0].tags.regex"}
    assert "not a valid RE2 regex" in errors["rules[0].tags.regex"]
    assert message in errors["rules[0].tags.regex"]


def test_regex_size_caps():
    errors: dict[str, str] = {}
    assert parse_tag_selector({"regex": "a" * 257}, "t", errors) is None
    assert "longer than 256" in errors["t.regex"]
    errors.clear()
    assert parse_tag_selector({"regex": ".{1000}"}, "t", errors) is None  # 8,004 instructions
    assert "too complex" in errors["t.regex"], errors


def test_a_pathological_regex_is_linear():
    # Catastrophic for a backtracking engine (2^n); RE2 answers at once.
    assert not select({"regex": "(a|a)*(a|a)*b"}).matches("a" * 5000)


TAGS = ["1.2.0", "1.2.5", "1.3.0", "2.0.0", "1.3.0-rc.1", "v1.2.4", "0.0.3", "0.0.4", "1.4.9", "2.0.0-rc.1",
        "latest", "1.2", "v", "vv1.2.3", "sha-1.2.3", "01.2.3", "1.2.3.4", "V1.2.3"]


@pytest.mark.parametrize(("range_", "expected"), [
    ("^1.2", ["1.2.0", "1.2.5", "1.3.0", "v1.2.4", "1.4.9"]),
    ("~1.2.3", ["1.2.5", "v1.2.4"]),
    ("1.2.x", ["1.2.0", "1.2.5", "v1.2.4"]),
    ("1.2", ["1.2.0", "1.2.5", "v1.2.4"]),
    (">=1.2.0 <2.0.0", ["1.2.0", "1.2.5", "1.3.0", "v1.2.4", "1.4.9"]),
    (">= 1.2.0 < 2", ["1.2.0", "1.2.5", "1.3.0", "v1.2.4", "1.4.9"]),
    (">=1.3.0-rc.0", ["1.3.0", "2.0.0", "1.3.0-rc.1", "1.4.9"]),   # names a 1.3.0 pre-release: rc.1 counts
    (">=1.2.0", ["1.2.0", "1.2.5", "1.3.0", "2.0.0", "v1.2.4", "1.4.9"]),  # 2.0.0-rc.1 does not
    ("1.2.3 - 1.4", ["1.2.5", "1.3.0", "v1.2.4", "1.4.9"]),
    ("<=1.2", ["1.2.0", "1.2.5", "v1.2.4", "0.0.3", "0.0.4"]),
    (">1", ["2.0.0"]),
    ("^0.0.3", ["0.0.3"]),
    ("0.0.3 || 2.x", ["2.0.0", "0.0.3"]),
    ("*", ["1.2.0", "1.2.5", "1.3.0", "2.0.0", "v1.2.4", "0.0.3", "0.0.4", "1.4.9"]),
])
def test_semver_ranges(range_, expected):
    selector = select({"semver": range_})
    assert [t for t in TAGS if selector.matches(t)] == expected


def test_prereleases_when_asked():
    selector = select({"semver": ">=1.2.0", "prereleases": True})
    assert selector.matches("1.3.0-rc.1") and selector.matches("2.0.0-rc.1")
    assert not select({"semver": "^1.2", "prereleases": True}).matches("2.0.0-rc.1")  # still below 2.0.0-0


def test_tag_versions():
    assert parse_tag_version("v1.2.3") == parse_tag_version("1.2.3")
    assert str(parse_tag_version("v1.2.3-rc.1+b7")) == "1.2.3-rc.1+b7"
    for tag in ("latest", "1.2", "v", "vv1.2.3", "V1.2.3", "01.2.3", "1.2.3.4", "sha-1.2.3", ""):
        assert parse_tag_version(tag) is None, tag


@pytest.mark.parametrize("range_", ["1.2.3.4", ">=abc", "^", "1.2.3 -", "~x.y.z.w", "=>1", "1.02.3"])
def test_bad_semver_ranges(range_):
    errors: dict[str, str] = {}
    assert parse_tag_selector({"semver": range_}, "tags", errors) is None
    assert errors["tags.semver"].startswith("bad semver range")


@pytest.mark.parametrize(("doc", "path", "message"), [
    ({}, "tags", "exactly one"),
    ({"glob": "*", "regex": "x"}, "tags", "exactly one"),
    ({"glob": "*", "prereleases": True}, "tags.prereleases", "only a semver"),
    ({"semver": "*", "prereleases": "yes"}, "tags.prereleases", "true or false"),
    ({"glob": ""}, "tags.glob", "non-empty"),
    ({"glob": 7}, "tags.glob", "non-empty"),
    ({"glob": "a\nb"}, "tags.glob", "control"),
    ({"semver": "*", "extra": 1}, "tags.extra", "unknown field"),
    ("sha-*", "tags", "must be an object"),
])
def test_selector_document_errors(doc, path, message):
    errors: dict[str, str] = {}
    parse_tag_selector(doc, "tags", errors)
    assert message in errors[path], errors


def test_semver_range_text_round_trips():
    assert str(SemverRange.parse("^1.2 || ~2.0.1")) == "^1.2 || ~2.0.1"
    assert select({"semver": ">=1", "prereleases": True}).to_dict() == {"semver": ">=1", "prereleases": True}
