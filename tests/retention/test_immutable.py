"""Immutable-tag rules (hub.retention.immutable): matching, the refusal message, validation by path."""

from __future__ import annotations

import pytest

from hub.retention import RetentionError, parse_immutable_rules, protects, refusal

RULES = parse_immutable_rules({"rules": [
    {"repositories": "team/legacy", "tags": {"glob": "*"}},
    {"repositories": "team/**", "tags": {"semver": ">=1.0.0"}},
    {"repositories": "*/base", "tags": {"regex": "(stable|lts-[0-9]+)"}},
]})


@pytest.mark.parametrize(("repository", "tag", "number"), [
    ("team/app", "v1.2.0", 2),
    ("team/a/b", "2.0.0", 2),
    ("team/app", "v0.9.0", None),
    ("team/app", "v1.3.0-rc.1", None),      # a pre-release is not >=1.0.0 (npm's rule)
    ("team/app", "latest", None),
    ("team/legacy", "anything", 1),         # the first matching rule is named
    ("team/legacy", "v1.0.0", 1),
    ("os/base", "lts-24", 3),
    ("os/base", "lts-24x", None),
    ("os/x/base", "stable", None),
    ("other/app", "v1.0.0", None),
])
def test_protects_names_the_first_matching_rule(repository, tag, number):
    rule = protects(RULES, repository, tag)
    assert (rule.number if rule else None) == number


def test_the_refusal_names_the_rule():
    rule = protects(RULES, "team/app", "v1.2.0")
    assert refusal(rule, "team/app", "v1.2.0") == (
        "tag v1.2.0 of team/app is immutable (rule 2: repositories team/**, tags semver >=1.0.0)")


def test_no_rules_protect_nothing():
    assert protects(parse_immutable_rules({}), "team/app", "v1.0.0") is None
    assert protects((), "team/app", "v1.0.0") is None


def test_round_trip():
    assert parse_immutable_rules({"rules": [r.to_dict() for r in RULES]}) == RULES


def test_errors_by_path():
    with pytest.raises(RetentionError) as caught:
        parse_immutable_rules({"rules": [{"repositories": "team/**"}, {"tags": {"regex": "(?<=v)1"}},
                                         {"tags": {"semver": "nope"}, "colour": "red"}, 7], "more": 1})
    errors = caught.value.errors
    assert set(errors) == {"rules[0].tags", "rules[1].tags.regex", "rules[2].tags.semver", "rules[2].colour",
                           "rules[3]", "more"}
    assert "not a valid RE2 regex" in errors["rules[1].tags.regex"]
    with pytest.raises(RetentionError, match="at most 100 rules"):
        parse_immutable_rules({"rules": [{"tags": {"glob": "*"}}] * 101})
    with pytest.raises(RetentionError, match="must be a JSON object"):
        parse_immutable_rules([])
