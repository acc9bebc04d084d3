"""Promotion gate documents and references (hub/registry/promotion.py): table-driven cases, and
hypothesis over arbitrary JSON (a document is either gates or a 422 naming fields, never a crash)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.problems import ValidationFailed
from hub.registry.promotion import parse_gates, split_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "tag_required", "expected"), [
    ("dev/app:1.2", False, ("dev/app", "1.2")),
    ("dev/team/app:latest", True, ("dev/team/app", "latest")),
    (f"dev/app@{DIGEST}", False, ("dev/app", DIGEST)),
    (f"dev/app@{DIGEST}", True, None),        # a target needs a tag
    ("app:1.2", False, None),                 # no tenant
    ("dev/app", False, None),                 # no tag or digest
    ("dev/app:", False, None),
    ("dev/App:1", False, None),               # names are lowercase
    ("dev/app:-x", False, None),              # tag grammar
    ("dev/app@sha256:xyz", False, None),
    ("dev/../app:1", False, None),
    ("dev/app:1.2:3", False, None),
    (42, False, None),
    ("d" * 600 + "/a:1", False, None),
])
def test_references(text, tag_required, expected):
    if expected is None:
        with pytest.raises(ValidationFailed):
            split_reference(text, "source", tag_required=tag_required)
    else:
        assert split_reference(text, "source", tag_required=tag_required) == expected


def test_a_valid_document_in_its_normal_form():
    gates = parse_gates({"gates": [
        {"repositories": "prod/**", "annotations": ["a", "a", "b"], "approval": {"role": "maintainer"}},
        {"repositories": "prod/app", "referrer_artifact_types": ["application/x"]}]})
    assert [g.to_dict() for g in gates] == [
        {"repositories": "prod/**", "annotations": ["a", "b"],
         "approval": {"role": "maintainer", "allow_self_approval": False}},
        {"repositories": "prod/app", "referrer_artifact_types": ["application/x"]}]
    assert gates[0].repositories.matches("prod/team/app") and not gates[1].repositories.matches("prod/other")
    assert parse_gates({"gates": []}) == () == parse_gates({})


@pytest.mark.parametrize(("document", "pointers"), [
    ([], None),
    ({"gates": {}}, {"#/gates"}),
    ({"gates": [{"annotations": ["x"]}]}, {"#/gates/0/repositories"}),
    ({"gates": [{"repositories": "p/*"}]}, {"#/gates/0"}),
    ({"gates": [{"repositories": "p/*", "annotations": [""]}]}, {"#/gates/0/annotations"}),
    ({"gates": [{"repositories": "p/*", "approval": {"role": "owner"}}]}, {"#/gates/0/approval"}),
    ({"gates": [{"repositories": "p/*", "approval": {"role": "admin", "allow_self_approval": "yes"}}]},
     {"#/gates/0/approval"}),
    ({"gates": [{"repositories": "p/*", "approval": {"role": "admin", "x": 1}}]}, {"#/gates/0/approval"}),
    ({"gates": [{"repositories": "p/*", "annotations": ["x"], "colour": "red"}]}, {"#/gates/0/colour"}),
    ({"gates": [{"repositories": "p/*", "annotations": ["x"]}] * 51}, {"#/gates"}),
])
def test_invalid_documents_name_every_field(document, pointers):
    with pytest.raises(ValidationFailed) as refused:
        parse_gates(document)
    if pointers is not None:
        assert {e["pointer"] for e in refused.value.errors} == pointers


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=30)
GATE = st.fixed_dictionaries({"repositories": st.sampled_from(["**", "prod/*", "p/[", 7, "a/**/b"])}, optional={
    "annotations": st.lists(st.text(max_size=5), max_size=3) | JSON,
    "referrer_artifact_types": st.lists(st.text(max_size=5), max_size=3),
    "approval": st.fixed_dictionaries({"role": st.sampled_from(["guest", "admin", "boss"])},
                                      optional={"allow_self_approval": st.booleans()}) | JSON})


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.fixed_dictionaries({"gates": st.lists(GATE, max_size=4)})))
def test_any_json_is_gates_or_a_validation_problem(document):
    try:
        gates = parse_gates(document)
    except ValidationFailed as exc:
        assert exc.status == 422
        return
    again = parse_gates({"gates": [g.to_dict() for g in gates]})  # the normal form parses to the same
    assert [g.to_dict() for g in again] == [g.to_dict() for g in gates]
