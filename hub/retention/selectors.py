"""Selectors of retention and immutable-tag rules: repository globs and tag selectors.

A repository selector is a glob over the full repository name (``team/app``). A tag selector
is one of a glob, an RE2 regex or a semver range, written in a document as ``{"glob": "sha-*"}``,
``{"regex": "v[0-9]+(\\.[0-9]+)*"}`` or ``{"semver": ">=1.0.0 <2", "prereleases": false}``.

Globs: ``*`` matches any run of characters except ``/``, ``**`` any run including ``/`` (and
``a/**/b`` also matches ``a/b``), ``?`` one character except ``/``, ``[abc]``, ``[a-z]`` and
``[!a-z]`` (or ``[^a-z]``) one character of (not of) a class, never ``/``; ``\\`` quotes the next
character. fnmatch is not used: its ``*`` crosses ``/``, so ``team/*`` would match
``team/a/b``. The common shapes (a literal, ``prefix*``, ``prefix**``, ``**``) are compared as
strings; the others are translated to an RE2 pattern, so no glob can make matching slow.

Regexes are written by tenant admins, so they run on RE2 (google-re2), which has no
backtracking: matching is linear in the tag's length whatever the pattern. They are anchored
(the whole tag must match, ``sha-[0-9a-f]+`` does not match ``xsha-1``), limited to
MAX_PATTERN characters and to MAX_REGEX_PROGRAM instructions of RE2's compiled program, and
what RE2 refuses (backreferences, lookaround) is a validation error naming the field. Matching
calls the binding's compiled object (``re2._re2.RE2.Match``) directly: the binding's ``re``-like
``fullmatch`` costs about 20 µs a call (it maps byte offsets back to characters for a match
object nobody reads), the compiled object 3.5 µs, and a dry run over 100,000 tags calls it for
every tag of every regex rule.

Semver ranges follow npm's grammar (node-semver), the one container and chart users know:
``>=1.2.0 <2.0.0``, ``^1.2``, ``~1.2.3``, ``1.2.x``, ``1.2.3 - 1.4``, ``||`` between
alternatives. A tag counts as a version when it is ``MAJOR.MINOR.PATCH[-pre][+build]``
(appstore.model.SemVer, semver.org 2.0.0) with an optional ``v`` in front: ``v1.2.3`` is 1.2.3;
any other tag (``latest``, ``1.2``, ``sha-abc``) never matches a semver selector. Pre-releases
are excluded as npm excludes them: ``1.3.0-rc.1`` matches only a range that names a pre-release
of 1.3.0 itself (``>=1.3.0-rc.0``), unless the selector says ``"prereleases": true``, which
compares them like any version. The range parser is written here over SemVer rather than taken
from PyPI: `semver` (python-semver 3) compares one operator at a time and has no ``^``, ``~``,
``x`` or ranges; `node-semver` (a port of npm's) has them but costs about 250 µs per test
(2.5 s for 10,000 tags: half the whole dry-run budget for one rule), and the grammar is 100 lines.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2
from re2 import _re2

from appstore.model import SemVer

MAX_PATTERN = 256
"""Characters of a glob, regex or semver range."""
MAX_REGEX_PROGRAM = 2000
"""Instructions of a regex's compiled RE2 program (``sha-[0-9a-f]{7,64}`` is 193, ``.{1000}`` 8,004)."""
_REGEX_MAX_MEM = 1 << 20

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is a validation error, not a line on stderr
_RE2_OPTIONS.never_capture = True
_RE2_OPTIONS.max_mem = _REGEX_MAX_MEM
_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


def _compile_re2(pattern: str) -> tuple[Any, str | None]:
    """The compiled RE2 object, or None and RE2's reason."""
    compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _RE2_OPTIONS)
    if not compiled.ok():
        return None, compiled.error().decode("utf-8", "replace")
    return compiled, None


def _re2_fullmatch(compiled: Any, text: str) -> bool:
    data = text.encode("utf-8", "surrogatepass")
    return compiled.Match(_ANCHOR_BOTH, data, 0, len(data))[0][0] != -1


def _check_text(value: Any, where: str, errors: dict[str, str], what: str) -> str | None:
    if not isinstance(value, str) or not value:
        errors[where] = f"must be a non-empty {what}"
        return None
    if len(value) > MAX_PATTERN:
        errors[where] = f"longer than {MAX_PATTERN} characters"
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        errors[where] = "contains control characters"
        return None
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        errors[where] = "contains unpaired surrogates"
        return None
    return value


# --------------------------------------------------------------------------- globs


_GLOB_SPECIAL = set("*?[\\")


@dataclass(frozen=True)
class Glob:
    """A glob (module docstring); `matches(text)` tests a whole repository name or tag."""

    pattern: str
    matches: Callable[[str], bool] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, pattern: str) -> Glob:
        """Compile `pattern`; raises ValueError with the reason when it is malformed."""
        stem = pattern.rstrip("*")
        stars = len(pattern) - len(stem)
        if pattern == "**":
            return cls(pattern, lambda text: True)
        if not _GLOB_SPECIAL & set(stem) and stars <= 2:
            if stars == 0:
                return cls(pattern, stem.__eq__)
            if stars == 2:
                return cls(pattern, lambda text: text.startswith(stem))
            return cls(pattern, lambda text: text.startswith(stem) and "/" not in text[len(stem):])
        compiled, error = _compile_re2(_glob_to_re2(pattern))
        if compiled is None:  # pragma: no cover - the translation only writes valid RE2
            raise ValueError(error)
        return cls(pattern, functools.partial(_re2_fullmatch, compiled))

    def __str__(self) -> str:
        return self.pattern


def _glob_to_re2(pattern: str) -> str:
    """The RE2 pattern of a glob; raises ValueError for an unclosed class or a trailing `\\`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                while i < n and pattern[i] == "*":  # `***` is `**`
                    i += 1
                if i < n and pattern[i] == "/" and (not out or out[-1].endswith("/")):
                    out.append("(?:.*/)?")  # `**/` at the start or after `/`: zero or more folders
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError("ends with a lone \\")
            i += 1
            out.append(_quote(pattern[i]))
        elif c == "[":
            end, klass = _glob_class(pattern, i)
            out.append(klass)
            i = end
            continue
        else:
            out.append(_quote(c))
        i += 1
    return "".join(out)


def _quote(char: str) -> str:
    return "\\" + char if not char.isalnum() and char != "_" and ord(char) < 128 else char


def _glob_class(pattern: str, start: int) -> tuple[int, str]:
    """(index after the class, RE2 class) of the `[...]` at `start`."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    members: list[str] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        c = pattern[i]
        if c == "\\":
            i += 1
            if i >= len(pattern):
                break
            c = pattern[i]
        if c == "/":
            raise ValueError("a character class cannot hold /")
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            low, high = c, pattern[i + 2]
            if low > high:
                raise ValueError(f"bad character range {low}-{high}")
            members.append(f"{_class_char(low)}-{_class_char(high)}")
            i += 3
        else:
            members.append(_class_char(c))
            i += 1
        first = False
    if i >= len(pattern):
        raise ValueError("unclosed character class [")
    body = "".join(members)
    return i + 1, f"[^/{body}]" if negate else f"[{body}]"


def _class_char(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char


# --------------------------------------------------------------------------- regex


@dataclass(frozen=True)
class Regex:
    """An RE2 regex matched against the whole text."""

    pattern: str
    matches: Callable[[str], bool] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, pattern: str) -> Regex:
        """Compile `pattern`; raises ValueError with RE2's reason, or for a program over the cap."""
        compiled, error = _compile_re2(pattern)
        if compiled is None:
            raise ValueError(f"not a valid RE2 regex ({error}); RE2 has no backreferences or lookaround")
        if compiled.ProgramSize() > MAX_REGEX_PROGRAM:
            raise ValueError(f"too complex: its RE2 program has {compiled.ProgramSize()} instructions, "
                             f"at most {MAX_REGEX_PROGRAM}")
        return cls(pattern, functools.partial(_re2_fullmatch, compiled))

    def __str__(self) -> str:
        return self.pattern


# --------------------------------------------------------------------------- semver


_PARTIAL_RE = re.compile(
    r"^v?(0|[1-9]\d*|[xX*])(?:\.(0|[1-9]\d*|[xX*])(?:\.(0|[1-9]\d*|[xX*])"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?$", re.ASCII)
_COMPARATOR_RE = re.compile(r"^(<=|>=|<|>|=|\^|~>|~)?(.*)$")
_MAX_NUMBER = 10**15
_LOWEST_PRE = ("0",)  # 2.0.0-0 is the lowest version of 2.0.0: `<2.0.0-0` excludes 2.0.0-rc.1 too


@dataclass(frozen=True)
class Comparator:
    op: str  # one of < <= > >= =
    version: SemVer
    written_prerelease: bool  # the range names this pre-release (npm's rule for matching pre-releases)

    def test(self, v: SemVer) -> bool:
        if self.op == "=":
            return v.same_precedence(self.version)
        if self.op == "<":
            return v.precedes(self.version)
        if self.op == "<=":
            return not self.version.precedes(v)
        if self.op == ">":
            return self.version.precedes(v)
        return not v.precedes(self.version)  # >=


@dataclass(frozen=True)
class SemverRange:
    """An npm-style range: alternatives (`||`) of comparator sets that must all hold."""

    text: str
    prereleases: bool = False
    alternatives: tuple[tuple[Comparator, ...], ...] = ()

    @classmethod
    def parse(cls, text: str, prereleases: bool = False) -> SemverRange:
        """Parse an npm range; raises ValueError naming the part it cannot read."""
        alternatives = []
        for part in text.split("||"):
            alternatives.append(tuple(_comparator_set(part.strip())))
        return cls(text, prereleases, tuple(alternatives))

    def matches_version(self, v: SemVer) -> bool:
        for comparators in self.alternatives:
            if all(c.test(v) for c in comparators):
                if not v.prerelease or self.prereleases:
                    return True
                core = (v.major, v.minor, v.patch)
                if any(c.written_prerelease and (c.version.major, c.version.minor, c.version.patch) == core
                       for c in comparators):
                    return True
        return False

    def __str__(self) -> str:
        return self.text


def parse_tag_version(tag: str) -> SemVer | None:
    """The version a tag names (`1.2.3`, `v1.2.3-rc.1+b5`), or None for any other tag."""
    if not tag or not (tag[0].isdigit() or (tag[0] == "v" and len(tag) > 1 and tag[1].isdigit())):
        return None
    try:
        return SemVer.parse(tag[1:] if tag[0] == "v" else tag)
    except ValueError:
        return None


def _comparator_set(text: str) -> list[Comparator]:
    if not text:
        return []  # an empty alternative is `*`: every release
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        low, high = _partial(hyphen.group(1)), _partial(hyphen.group(2))
        return [*_bound(">=", low), *_bound("<=", high)]
    # `>= 1.2` is `>=1.2`: join an operator to the version after it.
    tokens = re.sub(r"(<=|>=|<|>|=|\^|~>|~)\s+", r"\1", text).split()
    out: list[Comparator] = []
    for token in tokens:
        op, rest = _COMPARATOR_RE.match(token).groups()
        partial = _partial(rest)
        if op == "^":
            out.extend(_caret(partial))
        elif op in ("~", "~>"):
            out.extend(_tilde(partial))
        else:
            out.extend(_bound(op or "=", partial))
    return out


_Partial = tuple[int | None, int | None, int | None, tuple[str, ...]]


def _partial(text: str) -> _Partial:
    match = _PARTIAL_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version or partial version (1, 1.2, 1.2.x, 1.2.3, 1.2.3-rc.1)")
    parts: list[int | None] = []
    for group in match.groups()[:3]:
        if group is None or group in "xX*":
            parts.append(None)
        elif int(group) > _MAX_NUMBER:
            raise ValueError(f"{text!r}: number too large")
        else:
            parts.append(int(group))
    major, minor, patch = parts
    if major is None:
        minor = patch = None
    elif minor is None:
        patch = None
    pre = tuple(match.group(4).split(".")) if match.group(4) and patch is not None else ()
    if pre:
        try:  # semver.org's rule: numeric identifiers have no leading zero
            SemVer.parse("0.0.0-" + ".".join(pre))
        except ValueError:
            raise ValueError(f"{text!r}: bad pre-release {'.'.join(pre)!r}") from None
    return major, minor, patch, pre


def _comparator(op: str, major: int, minor: int, patch: int, pre: tuple[str, ...] = (),
                written: bool = False) -> Comparator:
    return Comparator(op, SemVer(major, minor, patch, pre), written and bool(pre))


def _next(major: int, minor: int | None = None) -> Comparator:
    """`<` the lowest version after the line: `<2.0.0-0` for major 1, `<1.3.0-0` for 1.2."""
    if minor is None:
        return _comparator("<", major + 1, 0, 0, _LOWEST_PRE)
    return _comparator("<", major, minor + 1, 0, _LOWEST_PRE)


def _bound(op: str, p: _Partial) -> list[Comparator]:
    major, minor, patch, pre = p
    if major is None:  # `*`, `x`, `>=*`: any version; `<*` and `>*` match nothing
        return [] if op in ("=", ">=", "<=") else [_comparator("<", 0, 0, 0, _LOWEST_PRE)]
    if patch is not None:
        return [_comparator(op, major, minor, patch, pre, written=True)]
    low_minor = minor if minor is not None else 0
    if op == "=":  # 1.2 is 1.2.x
        return [_comparator(">=", major, low_minor, 0), _next(major, minor)]
    if op == ">=":
        return [_comparator(">=", major, low_minor, 0)]
    if op == "<":
        return [_comparator("<", major, low_minor, 0, _LOWEST_PRE)]
    if op == ">":  # >1.2 is >=1.3.0, >1 is >=2.0.0
        nxt = _next(major, minor).version
        return [_comparator(">=", nxt.major, nxt.minor, 0)]
    return [_next(major, minor)]  # <=1.2 is <1.3.0-0


def _tilde(p: _Partial) -> list[Comparator]:
    major, minor, patch, pre = p
    if major is None:
        return []
    if minor is None:
        return [_comparator(">=", major, 0, 0), _next(major)]
    return [_comparator(">=", major, minor, patch or 0, pre, written=True), _next(major, minor)]


def _caret(p: _Partial) -> list[Comparator]:
    major, minor, patch, pre = p
    if major is None:
        return []
    low = _comparator(">=", major, minor or 0, patch or 0, pre, written=True)
    if major > 0 or minor is None:
        return [low, _next(major)]
    if minor > 0 or patch is None:
        return [low, _next(0, minor)]
    return [low, _comparator("<", 0, 0, patch + 1, _LOWEST_PRE)]


# --------------------------------------------------------------------------- tag selectors


@dataclass(frozen=True)
class TagSelector:
    """One of a glob, a regex or a semver range over tags."""

    kind: str  # glob | regex | semver
    matcher: Glob | Regex | SemverRange

    def matches(self, tag: str, version: SemVer | None = None) -> bool:
        """Does `tag` match? `version` is `parse_tag_version(tag)`, when the caller has it."""
        if self.kind == "semver":
            if version is None:
                version = parse_tag_version(tag)
            return version is not None and self.matcher.matches_version(version)
        return self.matcher.matches(tag)

    @property
    def includes_prereleases(self) -> bool:
        return self.kind == "semver" and self.matcher.prereleases

    def describe(self) -> str:
        extra = " (pre-releases too)" if self.includes_prereleases else ""
        return f"{self.kind} {self.matcher}{extra}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.kind: str(self.matcher)}
        if self.includes_prereleases:
            out["prereleases"] = True
        return out


ALL_TAGS = TagSelector("glob", Glob.parse("**"))


def parse_glob(value: Any, where: str, errors: dict[str, str]) -> Glob | None:
    text = _check_text(value, where, errors, "glob")
    if text is None:
        return None
    try:
        return Glob.parse(text)
    except ValueError as exc:
        errors[where] = f"bad glob: {exc}"
        return None


def parse_tag_selector(raw: Any, where: str, errors: dict[str, str]) -> TagSelector | None:
    """A tag selector document (module docstring); problems go to `errors` under `where`."""
    if not isinstance(raw, dict):
        errors[where] = 'must be an object with one of "glob", "regex" or "semver"'
        return None
    kinds = [k for k in ("glob", "regex", "semver") if k in raw]
    for key in raw:
        if key not in ("glob", "regex", "semver", "prereleases"):
            errors[f"{where}.{key}"] = "unknown field"
    if len(kinds) != 1:
        errors[where] = 'must have exactly one of "glob", "regex" or "semver"'
        return None
    kind = kinds[0]
    at = f"{where}.{kind}"
    prereleases = raw.get("prereleases", False)
    if "prereleases" in raw and (kind != "semver" or not isinstance(prereleases, bool)):
        errors[f"{where}.prereleases"] = ("must be true or false" if kind == "semver"
                                          else "only a semver selector takes prereleases")
        return None
    if kind == "glob":
        glob = parse_glob(raw[kind], at, errors)
        return TagSelector(kind, glob) if glob else None
    text = _check_text(raw[kind], at, errors, "string")
    if text is None:
        return None
    try:
        matcher = Regex.parse(text) if kind == "regex" else SemverRange.parse(text, prereleases)
    except ValueError as exc:
        errors[at] = str(exc) if kind == "regex" else f"bad semver range: {exc}"
        return None
    return TagSelector(kind, matcher)
