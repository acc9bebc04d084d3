"""Name, tag and digest grammar: tables plus property tests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import DigestInvalid, NameInvalid, TagInvalid
from hub.registry.names import NAME_RE, TAG_RE, digest_of, parse_digest, validate_name, validate_tag

GOOD_NAMES = ["a", "library/nginx", "team/app/sub", "a.b", "a_b", "a__b", "a-b", "a---b", "0/1/2",
              "x" * 255, "docker.io/library/busybox"]
BAD_NAMES = ["", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a.", "a___b", "a/../b", "..", ".", "a b",
             "a/./b", "x" * 256, "a\x00b", "a/B", "café", "a:b", "a@b"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name):
    with pytest.raises(NameInvalid):
        validate_name(name)


@pytest.mark.parametrize("tag,ok", [("latest", True), ("v1.2.3", True), ("_x", True), ("A-Z_0.9", True),
                                    ("a" * 128, True), ("a" * 129, False), ("-x", False), (".x", False),
                                    ("", False), ("a/b", False), ("a:b", False), ("ta g", False)])
def test_tags(tag, ok):
    if ok:
        assert validate_tag(tag) == tag
    else:
        with pytest.raises(TagInvalid):
            validate_tag(tag)


@pytest.mark.parametrize("value", ["sha256:" + "a" * 64, "sha512:" + "0" * 128])
def test_good_digests(value):
    assert str(parse_digest(value)) == value


@pytest.mark.parametrize("value", ["", "sha256", "sha256:", "sha256:" + "a" * 63, "sha256:" + "a" * 65,
                                   "sha256:" + "A" * 64, "sha512:" + "a" * 64, "md5:" + "a" * 32,
                                   "sha256:../../" + "a" * 58, ":abc", "sha256:" + "g" * 64, "SHA256:" + "a" * 64])
def test_bad_digests(value):
    with pytest.raises(DigestInvalid):
        parse_digest(value)


def test_blob_path_layout():
    d = parse_digest("sha256:" + "ab" + "c" * 62)
    assert d.blob_path == "blobs/sha256/ab/ab" + "c" * 62


@given(st.binary(max_size=512))
def test_digest_of_matches_hashlib(data):
    assert str(digest_of(data)) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert str(digest_of(data, "sha512")) == "sha512:" + hashlib.sha512(data).hexdigest()
    assert parse_digest(str(digest_of(data))) == digest_of(data)


@given(st.from_regex(NAME_RE, fullmatch=True))
def test_every_grammar_name_is_accepted_when_short_enough(name):
    if len(name) <= 255:
        assert validate_name(name) == name


@given(st.text(max_size=40))
def test_accepted_names_never_contain_traversal(name):
    try:
        validate_name(name)
    except NameInvalid:
        return
    parts = name.split("/")
    assert all(p not in ("", ".", "..") for p in parts)
    assert name == name.lower() and " " not in name


@given(st.from_regex(TAG_RE, fullmatch=True))
def test_every_grammar_tag_is_accepted(tag):
    assert validate_tag(tag) == tag
