"""JSON from untrusted bytes, with the nesting depth bounded before anything is parsed.

`json.loads` recurses once per level of nesting, so a body of a few thousand `[` raises
RecursionError (a 500 wherever nobody expected it), and whatever walks the parsed value next
(a schema validator, `json.dumps`) recurses as deep again. `loads` refuses such a document up
front with `JsonTooDeep`, a ValueError like every other malformed document, after a scan of the
text that neither recurses nor depends on the interpreter's recursion limit (`nesting_depth`).
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate
from typing import Any

# Deeper than any document DaoHub reads legitimately (a manifest nests 5 levels, the app
# metadata 6); far below where json.loads or a validator would run out of stack.
MAX_DEPTH = 64

# A string, or an unterminated one up to the end of the text: it matches wherever it starts, so
# the scan never starts again inside a string (which would make it quadratic).
_STRING = re.compile(r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+(?:"|\\?\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKETS = str.maketrans("[{]}", "(())")
_OPENS = re.compile(r"\(+")
_CLOSES = re.compile(r"\)+")
# Passes of `replace("()", "")` before the runs are counted: each takes away one level and
# leaves few runs behind (measured: a 4 MB document of nothing but brackets costs 0.05-0.25 s
# at every depth, a fifth of what json.loads then spends on it).
_PASSES = 4


class JsonTooDeep(ValueError):
    def __init__(self, max_depth: int):
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def decode(data: bytes | bytearray | str) -> str:
    """Bytes as json.loads would read them: UTF-8, -16 or -32 (a BOM or the NUL pattern says
    which); str passes through. Raises UnicodeDecodeError (a ValueError)."""
    if isinstance(data, str):
        return data
    return bytes(data).decode(json.detect_encoding(data), "surrogatepass")


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text`: the most `[` and `{` open at once.

    Strings are cut out (their brackets do not nest) and every bracket becomes `(` or `)`.
    Each pass of `replace("()", "")` then takes away exactly the innermost level; what is left
    is measured from its runs: the depth after the k-th run of `(` is the sum of the first k
    runs of `(` less the first k-1 runs of `)`, all summed in C. For text that is not JSON the
    number is an upper bound of how deep json.loads gets before it gives up.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_BRACKETS)
    passes = 0
    while brackets and passes < _PASSES:
        shorter = brackets.replace("()", "")
        if len(shorter) == len(brackets):
            break
        brackets, passes = shorter, passes + 1
    # A `)` before any `(` ends the parse there; from the first `(` on, runs alternate.
    brackets = brackets.lstrip(")")
    if not brackets:
        return passes
    opened = accumulate(map(len, _OPENS.findall(brackets)))
    closed = accumulate(map(len, _CLOSES.findall(brackets)), initial=0)
    return passes + max(map(operator.sub, opened, closed))


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    # Fewer brackets than levels allowed (most documents) cannot nest too deep: two counts in C.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise JsonTooDeep(max_depth)


class UnpairedSurrogate(ValueError):
    def __init__(self) -> None:
        super().__init__("a JSON string holds half of a UTF-16 surrogate pair, which is no text")


# A `\uD800`-`\uDFFF` escape, or such a code point itself (bytes are decoded with surrogatepass).
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH, unpaired_surrogates: bool = True,
          **kwargs: Any) -> Any:
    """json.loads with the depth checked first. Raises ValueError (JsonTooDeep, UnicodeDecodeError,
    json.JSONDecodeError) for anything that is not a JSON document of at most `max_depth` levels.

    json.loads keeps an unpaired surrogate (`"\\ud800"`) as a lone code point, which no UTF-8
    encoder takes (SQLite, YAML and HTTP bodies all raise UnicodeEncodeError on it);
    `unpaired_surrogates=False` refuses such a document with UnpairedSurrogate. Documents without
    a surrogate escape cost one regular expression search more."""
    text = decode(data)
    check_depth(text, max_depth)
    value = json.loads(text, **kwargs)
    if not unpaired_surrogates and _MAYBE_SURROGATE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UnpairedSurrogate() from None
    return value


__all__ = ["MAX_DEPTH", "JsonTooDeep", "UnpairedSurrogate", "check_depth", "decode", "loads", "nesting_depth"]
