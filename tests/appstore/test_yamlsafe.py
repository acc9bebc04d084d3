"""Bounded YAML loading: bombs, depth and size are refused before anything big is built."""

from __future__ import annotations

import tracemalloc

import pytest
import yaml

from appstore import yamlsafe
from appstore.errors import YamlError
from appstore.yamlsafe import Limits


def billion_laughs(levels: int = 9, fan: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(text, limits: Limits = yamlsafe.DEFAULT_LIMITS) -> str:
    with pytest.raises(YamlError) as info:
        yamlsafe.load(text, limits)
    return info.value.summary()


def test_plain_compose_loads():
    doc = yamlsafe.load("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n")
    assert doc == {"services": {"web": {"image": "nginx", "ports": ["80:80"]}}}


def test_ordinary_anchors_and_merge_keys_still_work():
    text = "x-common: &common {restart: always}\nservices:\n  a: {<<: *common, image: a}\n  b: {<<: *common, image: b}\n"
    assert yamlsafe.load(text)["services"] == {"a": {"restart": "always", "image": "a"},
                                               "b": {"restart": "always", "image": "b"}}


def test_billion_laughs_is_refused_with_bounded_memory():
    text = billion_laughs()  # ~1 KB standing for 9**10 (3.5 billion) strings
    assert len(text) < 2000
    message = []
    peak = peak_bytes(lambda: message.append(refused(text)))
    assert "expands to more than" in message[0]
    assert peak < 2 * 1024 * 1024


def test_alias_bomb_inside_mappings_is_refused():
    text = "a: &a {x: 1, y: 2}\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} {{p: *{chr(97 + i)}, q: *{chr(97 + i)}, r: *{chr(97 + i)}, "
        f"s: *{chr(97 + i)}}}\n" for i in range(20))
    assert "expands to more than" in refused(text)


def test_expansion_is_counted_not_just_alias_count():
    # 50 aliases, each of a 10,000-node list: 500,000 nodes from a small document.
    text = "base: &b [" + ", ".join("1" for _ in range(10_000)) + "]\nuses: [" + ", ".join("*b" for _ in range(50)) + "]\n"
    assert "expands to more than" in refused(text)


def test_too_many_aliases_are_refused():
    text = "a: &a 1\nlist: [" + ", ".join("*a" for _ in range(2000)) + "]\n"
    assert "more than 1000 aliases" in refused(text)


def test_recursive_alias_is_refused():
    assert "contains it" in refused("a: &a [1, *a]\n")


def test_deep_nesting_is_refused_before_recursion():
    text = "[" * 50_000 + "]" * 50_000
    message = []
    peak = peak_bytes(lambda: message.append(refused(text, Limits(max_bytes=200_000))))
    assert "nested deeper than 64" in message[0]
    assert peak < 2 * 1024 * 1024


def test_depth_limit_is_exact():
    limits = Limits(max_depth=5)
    assert yamlsafe.load("[" * 5 + "]" * 5, limits) == [[[[[]]]]]
    assert "nested deeper" in refused("[" * 6 + "]" * 6, limits)


class _ParserWithItsOwnLimit(yaml.SafeLoader):
    """A YAML parser that, like libyaml in PyYAML 6.0.4, reads ahead through nested `[` and
    refuses depth past 100 levels with a message of its own, before any event is returned."""

    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level >= 100:
            raise yaml.scanner.ScannerError(None, None, "exceeded its own maximum nesting depth", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def check_event(self, *choices):
        while not self.done:  # reads ahead to the end (PyYAML's scanner sets `done` there)
            self.fetch_more_tokens()
        return super().check_event(*choices)


def test_depth_is_refused_by_daohubs_check_whichever_parser_is_installed(monkeypatch):
    monkeypatch.setattr(yamlsafe, "_Loader", _ParserWithItsOwnLimit)
    text = "[" * 50_000 + "]" * 50_000
    assert "its own maximum" in str(pytest.raises(yaml.YAMLError, lambda: list(yaml.parse(
        text, Loader=_ParserWithItsOwnLimit))).value)
    assert "nested deeper than 64" in refused(text, Limits(max_bytes=200_000))
    assert "nested deeper than 64" in refused("a: " + text, Limits(max_bytes=200_000))
    # a document that parser refuses for any other reason keeps its message
    assert "invalid YAML" in refused("a: [1, 2\n")


def _nested(kind: str, depth: int) -> str:
    """A document of exactly `depth` nested collections."""
    if kind == "flow":
        return "[" * depth + "]" * depth
    if kind == "flow-map":
        return "{a: " * depth + "1" + "}" * depth
    if kind == "block-map":
        return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth - 1)) + f"{'  ' * (depth - 1)}last: 1\n"
    if kind == "block-seq":
        return "- " * depth + "x\n"
    if kind == "indentless":  # block sequences as mappings' values, at the mappings' own indentation
        n = depth // 2 - 1  # k0: / - k1: / ... / - x: a mapping and a sequence per line
        return "k0:\n" + "".join(f"{'  ' * (i - 1)}- k{i}:\n" for i in range(1, n + 1)) + f"{'  ' * n}- x\n"
    if kind == "flow-in-block":
        return "a:\n  b: " + "[" * (depth - 2) + "]" * (depth - 2) + "\n"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["flow", "flow-map", "block-map", "block-seq", "indentless", "flow-in-block"])
def test_depth_checking_scanner_agrees_with_the_event_count(kind):
    """The fallback scanner refuses exactly what the event count refuses: never a document
    within the limit, always one past it."""
    limits = Limits(max_depth=10)
    within, beyond = _nested(kind, 10), _nested(kind, 12)
    assert yamlsafe.check(within, limits) == yamlsafe._count(
        yamlsafe._depth_checked_events(within, limits.max_depth), limits)
    assert "nested deeper than 10" in refused(beyond, limits)
    with pytest.raises(YamlError, match="nested deeper than 10"):
        yamlsafe._count(yamlsafe._depth_checked_events(beyond, limits.max_depth), limits)


def test_oversized_input_is_refused_before_parsing():
    huge = "a: " + "x" * (2 << 20)
    assert "larger than" in refused(huge)
    assert "larger than" in refused(huge.encode())
    # a length check, not a parse: even text that is not YAML is refused for its size first
    assert "larger than" in refused("{{{{" * (1 << 19))


def test_multibyte_size_counts_bytes():
    assert "larger than" in refused("é" * 600, Limits(max_bytes=1000))


def test_node_limit_is_applied_without_aliases_too():
    text = "[" + ", ".join("1" for _ in range(1001)) + "]"
    assert "expands to more than 1000" in refused(text, Limits(max_nodes=1000))


def test_duplicate_keys_are_refused():
    assert "duplicate key 'image'" in refused("image: a\nimage: b\n")


def test_timestamps_stay_strings():
    assert yamlsafe.load("when: 2024-01-02\nat: 2001-12-14t21:59:43.10-05:00\n") == {
        "when": "2024-01-02", "at": "2001-12-14t21:59:43.10-05:00"}


def test_arbitrary_tags_are_refused():
    assert "invalid YAML" in refused("!!python/object/apply:os.system ['true']\n")


# Found by tests/fuzz (the yaml target): PyYAML's constructors raise ValueError, KeyError,
# IndexError or TypeError for a value that does not fit its explicit tag, and the set, binary,
# omap and pairs tags build what is not plain data (a set, bytes, tuples).
@pytest.mark.parametrize("text", [
    "a: !!int 'x'", "a: !!int ''", "a: !!int 0x", "a: !!int '0b'", "a: !!int '1:2:x'", "a: !!bool 'maybe'",
    "a: !!float 'x'", "a: !!float '.'", "a: " + "1" * 5000, "a: !!map x", "? !!set {a}\n: 1",
    "a: !!set {a, b}", "a: !!binary aGVsbG8=", "a: !!omap [b: 1]", "a: !!pairs [b: 1, b: 2]",
])
def test_values_that_do_not_fit_their_tag_are_refused(text):
    assert "invalid YAML" in refused(text)


def test_explicit_tags_that_fit_still_load():
    assert yamlsafe.load("a: !!int '12'\nb: !!float '1.5'\nc: !!bool 'yes'\nd: !!str 1\ne: !!map {f: 1}\n") == {
        "a": 12, "b": 1.5, "c": True, "d": "1", "e": {"f": 1}}


def test_several_documents_are_refused():
    assert "one YAML document" in refused("a: 1\n---\nb: 2\n")


def test_malformed_and_non_utf8():
    assert "invalid YAML" in refused("a: [1, 2\n")
    assert "not UTF-8" in refused(b"a: \xff\xfe\n")


def test_empty_document_is_none():
    assert yamlsafe.load("") is None
    assert yamlsafe.load("# only a comment\n") is None


def test_dump_keeps_order_and_writes_no_anchors():
    shared = {"k": "v"}
    text = yamlsafe.dump({"z": shared, "a": shared, "s": "two\nlines\n", "ports": ["22:22"]})
    assert "&" not in text and "*" not in text
    assert text.index("z:") < text.index("a:")
    assert yamlsafe.load(text) == {"z": {"k": "v"}, "a": {"k": "v"}, "s": "two\nlines\n", "ports": ["22:22"]}


@pytest.mark.parametrize("value", ["1e5", "1E-3", "0o17", "0x1F", "12345678", ".5", "+1", "-.inf", ".NaN", "true",
                                   "False", "null", "~", "", "yes", "off", "22:22", "1.0"])
def test_dump_quotes_strings_that_yaml_1_2_or_1_1_would_read_as_other_types(value):
    text = yamlsafe.dump({"v": value})
    assert text.startswith(("v: '", 'v: "')), text
    assert yamlsafe.load(text) == {"v": value}


@pytest.mark.parametrize("value", ["abc", "x1e5", "1e5x", "redis:7", "a b"])
def test_dump_leaves_plain_strings_plain(value):
    assert yamlsafe.dump({"v": value}) == f"v: {value}\n"
