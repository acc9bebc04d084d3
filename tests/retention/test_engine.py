"""The retention engine (hub.retention.engine.evaluate): pure evaluation of a policy over tag records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.retention import (DELETE, EMPTY_POLICY, KEEP, PROTECT, TagRecord, UntaggedManifest, evaluate,
                           parse_immutable_rules, parse_policy)
from hub.retention.engine import NO_RULE_KEEPS, NO_RULES, SUBJECT_DELETED, SUBJECT_KEPT, SUBJECT_UNKNOWN

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REPO = "acme/app"


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def tag(name: str, pushed: datetime, pulled: datetime | None = None, *, repo: str = REPO, digest: str = "",
        kind: str = "image", subject: str | None = None) -> TagRecord:
    return TagRecord(repo, name, digest or f"sha256:{name}", pushed, kind, pulled, subject)


def policy(*rules: dict, **extra) -> object:
    return parse_policy({"rules": list(rules), **extra})


def rule(tags: dict, keep: dict, **extra) -> dict:
    return {"tags": tags, "keep": keep, **extra}


def deleted(plan) -> set[str]:
    return {v.record.tag for v in plan.deleted}


def kept(plan) -> set[str]:
    return {v.record.tag for v in plan.tags if v.action != DELETE}


# --------------------------------------------------------------------------- must-show 1


def test_the_issues_ci_and_release_policy_deletes_exactly_the_expected_tags():
    ci = [tag(f"sha-{i:02d}", ago(hours=100 - i)) for i in range(30)]  # sha-29 is the newest
    releases = [tag(v, ago(days=60 - i)) for i, v in enumerate(["v1.2.0", "v1.2.1", "v1.2.2", "v1.3.0", "v1.3.1"])]
    rcs = [tag(v, ago(days=10 - i)) for i, v in enumerate(["v1.3.2-rc.1", "v1.4.0-rc.1", "v1.4.0-rc.2"])]
    pulls = {"sha-03": ago(days=2), "v1.2.0": ago(days=1), "v1.4.0-rc.1": ago(days=6, hours=23),
             "sha-10": ago(days=20), "v1.3.2-rc.1": ago(days=8)}
    records = [TagRecord(r.repository, r.tag, r.digest, r.pushed_at, "image", pulls.get(r.tag))
               for r in ci + releases + rcs]
    plan = evaluate(policy(
        rule({"semver": "*"}, {"semver_line": {"per": "minor", "count": 2}}),
        rule({"glob": "*"}, {"pulled_within_days": 7}),
        rule({"glob": "sha-*"}, {"latest_pushed": 5}),
    ), records, NOW)

    # Worked out by hand: 1.2 keeps v1.2.2 and v1.2.1, 1.3 keeps v1.3.1 and v1.3.0 (RCs take no place in
    # a line); pulled within 7 days: sha-03, v1.2.0, v1.4.0-rc.1; the newest 5 CI tags: sha-25 to sha-29.
    expected = {f"sha-{i:02d}" for i in range(25)} - {"sha-03"} | {"v1.3.2-rc.1", "v1.4.0-rc.2"}
    assert deleted(plan) == expected
    assert len(plan.deleted) == 26 and len(plan.kept) == 12
    by_tag = {v.record.tag: v for v in plan.tags}
    assert by_tag["v1.2.0"].rules == ("rules[1]",) and by_tag["v1.2.0"].reason == "kept by rules[1]"
    assert by_tag["sha-29"].rules == ("rules[2]",)
    assert by_tag["v1.2.2"].rules == ("rules[0]",)
    assert by_tag["sha-10"].reason == NO_RULE_KEEPS
    assert by_tag["sha-10"].age == timedelta(hours=90) and by_tag["sha-10"].since_pull == timedelta(days=20)
    assert by_tag["sha-00"].since_pull is None
    assert [v.record.tag for v in plan.tags] == sorted(r.tag for r in records)


# --------------------------------------------------------------------------- keep conditions


def test_no_policy_and_an_empty_policy_keep_everything():
    records = [tag("a", ago(days=900)), tag("b", ago(days=1), kind="app")]
    old = [UntaggedManifest(REPO, "sha256:old", ago(days=900))]
    for p in (None, EMPTY_POLICY, parse_policy({}), parse_policy({"rules": []})):
        plan = evaluate(p, records, NOW, untagged=old)
        assert [v.action for v in plan.tags] == [KEEP, KEEP]
        assert {v.reason for v in plan.tags} == {NO_RULES}
        assert plan.untagged_deleted == ()


def test_latest_pushed_counts_per_repository_with_ties_by_tag_name():
    records = [tag("c", ago(days=1)), tag("b", ago(days=1)), tag("a", ago(days=1)), tag("z", ago(days=2)),
               tag("y", ago(days=5), repo="acme/other"), tag("x", ago(days=9), repo="acme/other")]
    plan = evaluate(policy(rule({"glob": "*"}, {"latest_pushed": 2})), records, NOW)
    assert kept(plan) == {"a", "b", "y", "x"}  # c loses the tie to a and b; acme/other counts on its own


def test_latest_pushed_counts_tags_not_digests():
    records = [tag("v2", ago(days=1), digest="sha256:d"), tag("latest", ago(days=1), digest="sha256:d"),
               tag("v1", ago(days=2))]
    plan = evaluate(policy(rule({"glob": "*"}, {"latest_pushed": 2})), records, NOW)
    assert deleted(plan) == {"v1"}  # two tags of one digest are two of the 2


def test_latest_pushed_counts_only_what_the_rule_selects():
    records = [tag("sha-1", ago(days=3)), tag("sha-2", ago(days=2)), tag("main", ago(days=1)),
               tag("sha-3", ago(days=4), kind="app")]
    plan = evaluate(policy(rule({"glob": "sha-*"}, {"latest_pushed": 1}, artifacts=["image"])), records, NOW)
    assert kept(plan) == {"sha-2"}


def test_latest_pulled_ignores_tags_never_pulled():
    records = [tag("a", ago(days=1), ago(days=30)), tag("b", ago(days=1), ago(days=3)), tag("c", ago(hours=1)),
               tag("d", ago(days=1), ago(days=3))]
    plan = evaluate(policy(rule({"glob": "*"}, {"latest_pulled": 2})), records, NOW)
    assert kept(plan) == {"b", "d"}
    plan = evaluate(policy(rule({"glob": "*"}, {"latest_pulled": 10})), records, NOW)
    assert kept(plan) == {"a", "b", "d"}


def test_pushed_and_pulled_within_days_include_the_boundary():
    records = [tag("edge", ago(days=7), ago(days=7)), tag("old", ago(days=7, seconds=1), ago(days=7, seconds=1)),
               tag("never", ago(days=1))]
    assert kept(evaluate(policy(rule({"glob": "*"}, {"pushed_within_days": 7})), records, NOW)) == {"edge", "never"}
    assert kept(evaluate(policy(rule({"glob": "*"}, {"pulled_within_days": 7})), records, NOW)) == {"edge"}


def test_always():
    records = [tag("a", ago(days=3000)), tag("b", ago(days=1))]
    assert deleted(evaluate(policy(rule({"glob": "a"}, {"always": True})), records, NOW)) == {"b"}


def test_semver_line_per_major_and_per_minor():
    names = ["1.0.0", "v1.0.1", "1.1.0", "1.1.1", "v1.1.2", "2.0.0", "2.0.1-rc.1", "2.1.0+build.5", "latest",
             "1.1"]
    records = [tag(n, ago(days=i + 1)) for i, n in enumerate(names)]
    per_minor = evaluate(policy(rule({"glob": "*"}, {"semver_line": {"per": "minor", "count": 1}})), records, NOW)
    assert kept(per_minor) == {"v1.0.1", "v1.1.2", "2.0.0", "2.1.0+build.5"}
    per_major = evaluate(policy(rule({"glob": "*"}, {"semver_line": {"per": "major", "count": 2}})), records, NOW)
    assert kept(per_major) == {"1.1.1", "v1.1.2", "2.0.0", "2.1.0+build.5"}
    with_pre = evaluate(policy(rule({"semver": ">=2.0.0-0", "prereleases": True},
                                    {"semver_line": {"per": "minor", "count": 1}})), records, NOW)
    assert kept(with_pre) == {"2.0.1-rc.1", "2.1.0+build.5"}


def test_semver_line_ties_by_tag_name():
    records = [tag("v1.0.0", ago(days=1)), tag("1.0.0", ago(days=2)), tag("0.9.0", ago(days=3))]
    plan = evaluate(policy(rule({"semver": "*"}, {"semver_line": {"per": "major", "count": 1}})), records, NOW)
    assert kept(plan) == {"1.0.0", "0.9.0"}  # v1.0.0 and 1.0.0 are one version: "1.0.0" sorts first


def test_non_semver_tags_never_match_a_semver_selector():
    records = [tag(n, ago(days=1)) for n in ("latest", "1.2", "sha-1.2.3", "v1.2.3.4", "1.2.3")]
    plan = evaluate(policy(rule({"semver": "*"}, {"always": True})), records, NOW)
    assert kept(plan) == {"1.2.3"}


def test_rules_of_other_repositories_do_not_apply():
    records = [tag("a", ago(days=1)), tag("a", ago(days=1), repo="web/site")]
    plan = evaluate(policy(rule({"glob": "*"}, {"always": True}, repositories="web/**")), records, NOW)
    assert [(v.record.repository, v.action) for v in plan.tags] == [(REPO, DELETE), ("web/site", KEEP)]


def test_artifact_type_filter():
    records = [tag("img", ago(days=1)), tag("app", ago(days=1), kind="app"), tag("oci", ago(days=1), kind="artifact")]
    assert kept(evaluate(policy(rule({"glob": "*"}, {"always": True}, artifacts="app")), records, NOW)) == {"app"}
    assert kept(evaluate(policy(rule({"glob": "*"}, {"always": True})), records, NOW)) == {"img", "app", "oci"}


# --------------------------------------------------------------------------- overrides


def test_an_override_replaces_the_tenant_rules_for_its_repositories():
    records = [tag(f"t{i}", ago(days=i + 1), repo=repo) for repo in ("team/app", "team/scratch", "team/keep")
               for i in range(4)]
    p = parse_policy({
        "rules": [rule({"glob": "*"}, {"latest_pushed": 3})],
        "overrides": [
            {"repositories": "team/scratch", "rules": [rule({"glob": "*"}, {"latest_pushed": 1})]},
            {"repositories": "team/k*", "rules": []},
        ],
    })
    plan = evaluate(p, records, NOW)
    by_repo: dict[str, set[str]] = {}
    for v in plan.deleted:
        by_repo.setdefault(v.record.repository, set()).add(v.record.tag)
    assert by_repo == {"team/app": {"t3"}, "team/scratch": {"t1", "t2", "t3"}}  # team/keep: no rules, all kept
    assert {v.rules for v in plan.tags if v.record.repository == "team/scratch" and v.action == KEEP} == {
        ("overrides[0].rules[0]",)}


def test_untagged_days_follow_the_override():
    untagged = [UntaggedManifest("a/x", "sha256:1", ago(days=10)), UntaggedManifest("b/x", "sha256:2", ago(days=10)),
                UntaggedManifest("a/x", "sha256:3", ago(days=3)),
                UntaggedManifest("a/x", "sha256:4", ago(days=30), referenced=True)]
    p = parse_policy({"untagged_days": 5, "overrides": [{"repositories": "b/**", "untagged_days": 20}]})
    plan = evaluate(p, [], NOW, untagged=untagged)
    assert [(v.record.repository, v.record.digest) for v in plan.untagged_deleted] == [("a/x", "sha256:1")]
    assert plan.untagged_deleted[0].reason == "untagged for more than 5 days"
    assert plan.untagged_deleted[0].age == timedelta(days=10)


# --------------------------------------------------------------------------- referrers


def test_referrers_follow_their_subject():
    records = [
        tag("v1", ago(days=9), digest="sha256:old"),
        tag("v2", ago(days=1), digest="sha256:new"),
        tag("sha256-old.sig", ago(days=9), digest="sha256:sig-old", kind="signature", subject="sha256:old"),
        tag("sha256-new.sig", ago(days=1), digest="sha256:sig-new", kind="signature", subject="sha256:new"),
        tag("sha256-old.sbom", ago(days=9), digest="sha256:sbom-old", kind="sbom", subject="sha256:old"),
        # a signature of the SBOM: follows the chain
        tag("sha256-sbom-old.sig", ago(days=9), digest="sha256:x", kind="signature", subject="sha256:sbom-old"),
        tag("orphan.sig", ago(days=9), kind="signature", subject="sha256:not-in-the-input"),
    ]
    untagged = [UntaggedManifest(REPO, "sha256:att-old", ago(days=90), subject="sha256:old"),
                UntaggedManifest(REPO, "sha256:att-new", ago(days=90), subject="sha256:new")]
    plan = evaluate(policy(rule({"glob": "**"}, {"latest_pushed": 1}), untagged_days=30), records, NOW,
                    untagged=untagged)
    reasons = {v.record.tag: (v.action, v.reason) for v in plan.tags}
    assert reasons == {
        "v1": (DELETE, NO_RULE_KEEPS),
        "v2": (KEEP, "kept by rules[0]"),
        "sha256-old.sig": (DELETE, SUBJECT_DELETED),
        "sha256-new.sig": (KEEP, SUBJECT_KEPT),
        "sha256-old.sbom": (DELETE, SUBJECT_DELETED),
        "sha256-sbom-old.sig": (DELETE, SUBJECT_DELETED),
        "orphan.sig": (KEEP, SUBJECT_UNKNOWN),
    }
    # OCI 1.1 referrers are untagged: they follow their subject, not untagged_days
    assert [(v.record.digest, v.reason) for v in plan.untagged_deleted] == [("sha256:att-old", SUBJECT_DELETED)]


def test_a_subject_with_one_tag_left_keeps_its_referrers():
    records = [tag("v1", ago(days=9), digest="sha256:d"), tag("stable", ago(days=1), digest="sha256:d"),
               tag("sig", ago(days=9), kind="signature", subject="sha256:d")]
    plan = evaluate(policy(rule({"glob": "stable"}, {"always": True})), records, NOW)
    assert deleted(plan) == {"v1"}


def test_referrers_are_never_kept_by_rules_that_do_not_name_them():
    records = [tag("v1", ago(days=9)), tag("sig", ago(days=1), kind="signature", subject="sha256:v1")]
    # `any` is every kind but referrers: the dead image's fresh signature does not survive on its own
    plan = evaluate(policy(rule({"glob": "v*"}, {"latest_pushed": 1}, artifacts="app"),
                           rule({"glob": "*"}, {"pushed_within_days": 3})), records, NOW)
    assert deleted(plan) == {"v1", "sig"}
    plan = evaluate(policy(rule({"glob": "*"}, {"pushed_within_days": 3}, artifacts="signature")), records, NOW)
    assert [(v.record.tag, v.action, v.reason) for v in plan.tags] == [
        ("sig", KEEP, "kept by rules[0]"), ("v1", DELETE, NO_RULE_KEEPS)]


# --------------------------------------------------------------------------- immutable tags


def test_immutable_tags_are_protected_and_keep_their_referrers():
    immutable = parse_immutable_rules({"rules": [{"repositories": "acme/**", "tags": {"semver": ">=1.0.0"}}]})
    records = [tag("v1.2.0", ago(days=400)), tag("v0.9.0", ago(days=400)),
               tag("sig", ago(days=400), kind="signature", subject="sha256:v1.2.0")]
    plan = evaluate(policy(rule({"glob": "latest"}, {"always": True})), records, NOW, immutable=immutable)
    verdicts = {v.record.tag: v for v in plan.tags}
    assert verdicts["v1.2.0"].action == PROTECT
    assert verdicts["v1.2.0"].reason == "immutable (rule 1: repositories acme/**, tags semver >=1.0.0)"
    assert verdicts["sig"].action == KEEP and verdicts["sig"].reason == SUBJECT_KEPT
    assert deleted(plan) == {"v0.9.0"}
    assert [v.record.tag for v in plan.protected] == ["v1.2.0"]


# --------------------------------------------------------------------------- determinism and inputs


def sample_records(seed: int) -> tuple[list[TagRecord], list[UntaggedManifest]]:
    rng = random.Random(seed)
    records, untagged = [], []
    for r in range(5):
        repo = f"team/app-{r}"
        for i in range(30):
            name = rng.choice([f"sha-{i:03x}", f"v1.{i % 4}.{i}", f"v1.{i % 3}.{i}-rc.1", f"n{i}"])
            if any(x.repository == repo and x.tag == name for x in records):
                continue
            pushed = ago(hours=rng.randrange(1, 24 * 60) // 6 * 6)  # coarse times: many ties
            pulled = ago(hours=rng.randrange(1, 24 * 30)) if rng.random() < 0.4 else None
            records.append(TagRecord(repo, name, f"sha256:{r}-{i % 20}", pushed, "image", pulled))
        records.append(TagRecord(repo, "sig", f"sha256:{r}-sig", ago(days=1), "signature", None, f"sha256:{r}-3"))
        untagged.append(UntaggedManifest(repo, f"sha256:{r}-u", ago(days=rng.randrange(1, 60))))
    return records, untagged


DETERMINISM_POLICY = {
    "rules": [rule({"semver": "^1"}, {"semver_line": {"per": "minor", "count": 2}}),
              rule({"glob": "sha-*"}, {"latest_pushed": 3}), rule({"regex": "n[0-9]"}, {"latest_pulled": 2}),
              rule({"glob": "*"}, {"pulled_within_days": 5})],
    "untagged_days": 20,
    "overrides": [{"repositories": "team/app-4", "rules": [rule({"glob": "*"}, {"latest_pushed": 4})]}],
}


def test_the_plan_does_not_depend_on_the_order_of_its_inputs():
    records, untagged = sample_records(7)
    p = parse_policy(DETERMINISM_POLICY)
    first = evaluate(p, records, NOW, untagged=untagged)
    assert first.deleted and first.kept
    rng = random.Random(3)
    for _ in range(5):
        rng.shuffle(records)
        rng.shuffle(untagged)
        assert evaluate(p, records, NOW, untagged=untagged) == first


def test_records_listed_twice_are_refused():
    with pytest.raises(ValueError, match="listed twice"):
        evaluate(EMPTY_POLICY, [tag("a", ago(days=1)), tag("a", ago(days=2))], NOW)
    with pytest.raises(ValueError, match="listed twice"):
        evaluate(EMPTY_POLICY, [], NOW, untagged=[UntaggedManifest(REPO, "d", NOW)] * 2)


# --------------------------------------------------------------------------- properties

TAG_NAMES = ["latest", "main", "sha-a1", "sha-b2", "sha-c3", "v1.0.0", "v1.0.1", "1.1.0", "v1.1.1-rc.1", "2.0.0",
             "v2.0.1", "nightly-1", "x"]
rules_strategy = st.fixed_dictionaries({
    "repositories": st.sampled_from(["**", "team/*", "team/a", "other/**", "*/b"]),
    "tags": st.sampled_from([{"glob": "**"}, {"glob": "sha-*"}, {"glob": "v*"}, {"regex": "(v)?[0-9.]+"},
                             {"semver": "*"}, {"semver": "^1", "prereleases": True}, {"semver": ">=1.1.0"}]),
    "artifacts": st.sampled_from(["any", "image", ["app", "signature"], "referrers"]),
    "keep": st.one_of(
        st.builds(lambda n: {"latest_pushed": n}, st.integers(1, 4)),
        st.builds(lambda n: {"latest_pulled": n}, st.integers(1, 4)),
        st.builds(lambda n: {"pushed_within_days": n}, st.integers(1, 20)),
        st.builds(lambda n: {"pulled_within_days": n}, st.integers(1, 20)),
        st.just({"always": True}),
        st.builds(lambda per, n: {"semver_line": {"per": per, "count": n}}, st.sampled_from(["major", "minor"]),
                  st.integers(1, 3)))})


@st.composite
def tag_sets(draw) -> list[TagRecord]:
    out = []
    for repo in ("team/a", "team/b", "other/c"):
        names = draw(st.lists(st.sampled_from(TAG_NAMES), unique=True, max_size=8))
        for name in names:
            pushed = ago(days=draw(st.integers(0, 30)))
            pulled = draw(st.one_of(st.none(), st.integers(0, 30).map(lambda d: ago(days=d))))
            kind = draw(st.sampled_from(["image", "image", "app", "signature"]))
            digest = f"sha256:{draw(st.integers(0, 5))}"
            subject = f"sha256:{draw(st.integers(0, 5))}" if kind == "signature" else None
            out.append(TagRecord(repo, name, digest, pushed, kind, pulled, subject))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag_sets(), st.lists(rules_strategy, min_size=1, max_size=4), rules_strategy)
def test_adding_a_rule_never_deletes_more(records, rules, extra):
    before = evaluate(parse_policy({"rules": rules}), records, NOW)
    after = evaluate(parse_policy({"rules": [*rules, extra]}), records, NOW)
    gone = {(v.record.repository, v.record.tag) for v in after.deleted}
    assert gone <= {(v.record.repository, v.record.tag) for v in before.deleted}


@settings(max_examples=100, deadline=None)
@given(tag_sets(), st.lists(rules_strategy, max_size=4))
def test_always_on_every_repository_deletes_nothing(records, rules):
    plan = evaluate(parse_policy({"rules": [*rules, rule({"glob": "**"}, {"always": True}, repositories="**")]}),
                    records, NOW)
    assert plan.deleted == ()


@settings(max_examples=100, deadline=None)
@given(tag_sets(), st.lists(rules_strategy, min_size=1, max_size=4), st.randoms())
def test_every_tag_has_one_verdict_and_order_does_not_matter(records, rules, rng):
    p = parse_policy({"rules": rules})
    plan = evaluate(p, records, NOW)
    assert sorted((v.record.repository, v.record.tag) for v in plan.tags) == sorted(
        (r.repository, r.tag) for r in records)
    assert all(v.action != KEEP or v.reason for v in plan.tags)
    shuffled = list(records)
    rng.shuffle(shuffled)
    assert evaluate(p, shuffled, NOW) == plan
