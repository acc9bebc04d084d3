"""hub.safejson: the nesting depth is measured without recursion, before json.loads runs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.safejson import MAX_DEPTH, JsonTooDeep, UnpairedSurrogate, loads, nesting_depth


def _depth_by_walking(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth_by_walking, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth_by_walking, value), default=0)
    return 0


def _prefix_depth(text: str) -> int:
    """How deep json.loads recurses before it stops: open brackets outside strings, counted
    until the first bracket that closes more than was opened."""
    depth = most = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            most = max(most, depth)
        elif c in "]}":
            depth -= 1
            if depth < 0:
                break
    return most


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\ab'), inner, max_size=4),
    max_leaves=40,
)


@given(_json)
def test_depth_of_valid_json_is_exact(value):
    text = json.dumps(value)
    assert nesting_depth(text) == _depth_by_walking(value)


@given(st.text(alphabet='[]{}"\\a,', max_size=60))
def test_depth_of_any_text_bounds_how_deep_json_loads_goes(text):
    assert nesting_depth(text) >= _prefix_depth(text)


@pytest.mark.parametrize("text,depth", [
    ("{}", 1), ("[]", 1), ("1", 0), ("", 0), ('"[[[["', 0), ('["]]]", [["\\"["]]]', 3),
    ('{"a": [1, {"b": "[[[[["}]}', 3), ("[1, 2", 1), ("[[[[", 4), ("[[]][[[]]]", 3),
])
def test_depth_table(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,      # deep and balanced
    "[" * 100_000,                      # deep and never closed: json.loads recurses anyway
    '{"a":' * 50_000 + "1" + "}" * 50_000,
])
def test_deep_documents_are_refused_before_parsing(text, monkeypatch):
    # json.loads would raise RecursionError on these; it must never be reached.
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("json.loads ran"))
    with pytest.raises(JsonTooDeep):
        loads(text)
    with pytest.raises(ValueError):
        loads(text.encode())


def test_the_limit_is_inclusive():
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(at_limit) is not None
    with pytest.raises(JsonTooDeep):
        loads("[" + at_limit + "]")
    assert loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JsonTooDeep):
        loads("[[1]]", max_depth=1)


def test_bytes_are_read_as_json_loads_reads_them():
    doc = {"a": ["ü", 1]}
    for encoding in ("utf-8", "utf-16", "utf-32", "utf-16-le"):
        assert loads(json.dumps(doc, ensure_ascii=False).encode(encoding)) == doc
    with pytest.raises(ValueError):
        loads(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError):
        loads(b'{"a": NaN}', parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


@pytest.mark.parametrize("text", ['"\\ud800"', '["a\\udfffb"]', '{"\\uDBFF": 1}', '"\\ud800\\ud800"',
                                  '"\ud800"'])
def test_unpaired_surrogates_are_refused_when_asked(text):
    assert loads(text) is not None  # json.loads takes them, and so does loads by default
    with pytest.raises(UnpairedSurrogate):
        loads(text, unpaired_surrogates=False)
    with pytest.raises(ValueError):
        loads(text.encode("utf-8", "surrogatepass"), unpaired_surrogates=False)


def test_surrogate_pairs_are_text():
    assert loads('["\\ud83d\\ude00", "\\u00e9"]', unpaired_surrogates=False) == ["\U0001f600", "é"]
