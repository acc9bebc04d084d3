"""Retention policy documents: validation by path, bounds, overrides (hub.retention.policy)."""

from __future__ import annotations

import pytest

from hub.retention import RetentionError, parse_policy
from hub.retention.policy import MAX_OVERRIDES, MAX_RULES, REFERRER_TYPES, SUBJECT_TYPES

ALWAYS = {"tags": {"glob": "**"}, "keep": {"always": True}}


def errors_of(doc) -> dict[str, str]:
    with pytest.raises(RetentionError) as caught:
        parse_policy(doc)
    return caught.value.errors


def test_a_full_document_parses_and_round_trips():
    doc = {
        "rules": [
            {"repositories": "team/**", "tags": {"semver": ">=1.0.0", "prereleases": True}, "artifacts": ["image"],
             "keep": {"semver_line": {"per": "minor", "count": 2}}},
            {"repositories": "**", "tags": {"glob": "sha-*"}, "artifacts": ["app", "image"],
             "keep": {"latest_pushed": 5}},
            {"repositories": "**", "tags": {"regex": "nightly-.*"}, "artifacts": ["artifact"],
             "keep": {"pulled_within_days": 7}},
            {"repositories": "**", "tags": {"glob": "**"}, "artifacts": ["referrers"], "keep": {"latest_pulled": 1}},
            {"repositories": "**", "tags": {"glob": "**"}, "artifacts": ["sbom"], "keep": {"pushed_within_days": 3}},
            {"repositories": "**", "tags": {"glob": "**"}, "artifacts": ["app"], "keep": {"always": True}},
        ],
        "untagged_days": 14,
        "overrides": [{"repositories": "team/legacy", "rules": [], "untagged_days": 90}],
    }
    policy = parse_policy(doc)
    assert [r.id for r in policy.default.rules] == [f"rules[{i}]" for i in range(6)]
    assert policy.default.rules[3].artifacts == REFERRER_TYPES
    assert policy.default.untagged_days == 14
    assert policy.overrides[0].rules.untagged_days == 90
    assert parse_policy(policy.to_dict()) == policy


def test_defaults():
    rule = parse_policy({"rules": [ALWAYS]}).default.rules[0]
    assert str(rule.repositories) == "**"
    assert rule.artifacts == SUBJECT_TYPES  # "any" is every kind but referrers
    assert not rule.selects_referrers
    empty = parse_policy({})
    assert empty.is_empty and empty.default.rules == () and empty.default.untagged_days is None


def test_every_error_is_collected_by_path():
    errors = errors_of({
        "rules": [
            {"tags": {"regex": "(a)\\1"}, "keep": {"latest_pushed": 0}},
            {"repositories": "[x", "keep": {"always": False}, "artifacts": ["image", "helm"], "colour": 1},
            {"tags": {"semver": "^1"}, "keep": {"semver_line": {"per": "patch", "count": 10_001}}},
            {"tags": {"glob": "*"}, "keep": {"latest_pushed": 1, "always": True}},
            "nope",
        ],
        "untagged_days": 3651,
        "overrides": [{"repositories": "", "rules": {}}, {"repositories": "a/*", "rules": [{}]}],
        "extra": True,
    })
    assert errors == {
        "rules[0].tags.regex": errors["rules[0].tags.regex"],
        "rules[0].keep.latest_pushed": "must be a whole number from 1 to 10000",
        "rules[1].repositories": "bad glob: unclosed character class [",
        "rules[1].tags": 'required: {"glob": "**"} selects every tag',
        "rules[1].keep.always": "must be true",
        "rules[1].artifacts[1]": errors["rules[1].artifacts[1]"],
        "rules[1].colour": "unknown field",
        "rules[2].keep.semver_line.per": 'must be "major" or "minor"',
        "rules[2].keep.semver_line.count": "must be a whole number from 1 to 10000",
        "rules[3].keep": errors["rules[3].keep"],
        "rules[4]": "must be an object",
        "untagged_days": "must be a whole number from 1 to 3650",
        "overrides[0].repositories": "must be a non-empty glob",
        "overrides[0].rules": "must be a list of rules",
        "overrides[1].rules[0].tags": 'required: {"glob": "**"} selects every tag',
        "overrides[1].rules[0].keep": errors["overrides[1].rules[0].keep"],
        "extra": "unknown field",
    }
    assert "not a valid RE2 regex" in errors["rules[0].tags.regex"]
    assert "unknown artifact type 'helm'" in errors["rules[1].artifacts[1]"]
    assert "exactly one of" in errors["rules[3].keep"]
    assert errors["overrides[1].rules[0].keep"].startswith("required")


@pytest.mark.parametrize(("doc", "path"), [
    ({"rules": [ALWAYS] * (MAX_RULES + 1)}, "rules"),
    ({"overrides": [{"repositories": f"r{i}"} for i in range(MAX_OVERRIDES + 1)]}, "overrides"),
    ({"rules": [{"repositories": "a" * 257, "tags": {"glob": "*"}, "keep": {"always": True}}]},
     "rules[0].repositories"),
    ({"rules": [{"tags": {"glob": "*"}, "keep": {"pushed_within_days": 3651}}]}, "rules[0].keep.pushed_within_days"),
    ({"rules": [{"tags": {"glob": "*"}, "keep": {"pulled_within_days": True}}]}, "rules[0].keep.pulled_within_days"),
    ({"rules": [{"tags": {"glob": "*"}, "keep": {"latest_pulled": 2.0}}]}, "rules[0].keep.latest_pulled"),
    ({"rules": [{"tags": {"glob": "*"}, "artifacts": [], "keep": {"always": True}}]}, "rules[0].artifacts"),
    # Found by the retention fuzz target: an unhashable entry was looked up in a set (TypeError, a 500).
    ({"rules": [{"tags": {"glob": "*"}, "artifacts": ["image", {}], "keep": {"always": True}}]},
     "rules[0].artifacts[1]"),
    ({"rules": [{"tags": {"glob": "*"}, "artifacts": [["sbom"]], "keep": {"always": True}}]}, "rules[0].artifacts[0]"),
    ({"overrides": [{"repositories": "a/*"}, {"repositories": "a/*"}]}, "overrides[1].repositories"),
    ({"rules": "all"}, "rules"),
    ({"overrides": {}}, "overrides"),
])
def test_bounds_and_shapes(doc, path):
    assert path in errors_of(doc)


@pytest.mark.parametrize("doc", [None, [], "rules", 3])
def test_not_an_object(doc):
    assert errors_of(doc) == {"": "a retention policy must be a JSON object"}


def test_the_most_specific_override_replaces_the_tenant_rules():
    policy = parse_policy({
        "rules": [ALWAYS],
        "untagged_days": 7,
        "overrides": [
            {"repositories": "team/**", "rules": [{"tags": {"glob": "*"}, "keep": {"latest_pushed": 3}}]},
            {"repositories": "team/app", "rules": [{"tags": {"glob": "*"}, "keep": {"latest_pushed": 1}}]},
            {"repositories": "team/app*", "rules": []},
            {"repositories": "team/*", "rules": []},  # 5 literals like team/**, but one wildcard fewer
            {"repositories": "team/*b", "rules": []},
            {"repositories": "team/w*", "rules": []},  # the same specificity as team/*b, listed later
        ],
    })
    assert policy.for_repository("other/app") is policy.default
    assert policy.for_repository("team/x/y").id == "overrides[0]"
    assert policy.for_repository("team/api").id == "overrides[3]"   # team/* beats team/**
    assert policy.for_repository("team/web").id == "overrides[4]"   # a tie: the first listed
    assert policy.for_repository("team/app2").id == "overrides[2]"  # team/app* (8) beats team/** (5)
    assert policy.for_repository("team/app").id == "overrides[1]"   # 8 literals each: no wildcard beats one
    replaced = policy.for_repository("team/x/y")
    assert replaced.untagged_days is None  # replaced, not merged: the tenant's untagged_days is gone too
    assert [r.id for r in replaced.rules] == ["overrides[0].rules[0]"]
