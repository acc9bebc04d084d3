"""Retention policy documents: parsed and validated into frozen dataclasses.

The document, as the admin API and the CLI take it (a JSON object; docs/retention.md has an
example)::

    {
      "rules": [RULE, ...],              # ordered; at most MAX_RULES
      "untagged_days": D,                # optional: untagged manifests older than D days go
      "overrides": [                     # optional, at most MAX_OVERRIDES
        {"repositories": GLOB, "rules": [RULE, ...], "untagged_days": D}
      ]
    }

    RULE = {
      "repositories": GLOB,              # default "**": every repository
      "tags": TAG_SELECTOR,              # required: {"glob": ...} | {"regex": ...} | {"semver": ..., "prereleases": bool}
      "artifacts": [TYPE, ...] | TYPE,   # default "any"
      "keep": KEEP                       # required, exactly one of:
    }
    KEEP = {"latest_pushed": N} | {"latest_pulled": N} | {"pushed_within_days": D}
         | {"pulled_within_days": D} | {"always": true}
         | {"semver_line": {"per": "major" | "minor", "count": N}}

Artifact types: ``image``, ``app`` (an app-store version), ``artifact`` (any other OCI
artifact), and the referrer kinds ``signature``, ``sbom`` and ``attestation``. ``any`` means
every non-referrer type (image, app, artifact) and ``referrers`` the three referrer kinds. A
referrer is selected only by a rule that names it (``referrers`` or its kind): a rule such as
"always keep ``**``" must not keep a dead image's signatures alive, which is what the issue asks
(referrers follow their subject; engine.py).

Overrides: a policy belongs to a tenant, and an override attaches another rule list to the
repositories its glob matches. For a repository, the **most specific** matching override
**replaces** the tenant's rules and untagged_days (it is not merged with them); the tenant's
rules apply where no override matches. Specificity is the number of literal characters of the
glob (``team/app`` 8, ``team/app-*`` 9, ``team/**`` 5), then the fewer wildcards (``team/app``
beats ``team/app*``); on a tie the override listed first wins.
Replacing rather than merging because a tag is kept when any rule keeps it: merged rules could
only keep more, so an override could never make a repository stricter than its tenant (delete
the nightly builds of ``team/scratch`` sooner). Most specific rather than first listed because a
policy is edited over time and reordering a list should not silently move a repository from one
override to another. An override with no rules keeps everything in its repositories: the way to
exempt them.

Bounds, so that a tenant admin's document cannot make a run slow: MAX_RULES rules per rule list,
MAX_OVERRIDES overrides, patterns of selectors.MAX_PATTERN characters, N in 1..MAX_COUNT,
D in 1..MAX_DAYS. Every problem is collected into one RetentionError keyed by field path
(``overrides[1].rules[0].keep.latest_pushed``), as appstore.model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RetentionError
from .selectors import Glob, TagSelector, parse_glob, parse_tag_selector

MAX_RULES = 50
MAX_OVERRIDES = 100
MAX_COUNT = 10_000
MAX_DAYS = 3650

SUBJECT_TYPES = frozenset({"image", "app", "artifact"})
REFERRER_TYPES = frozenset({"signature", "sbom", "attestation"})
ARTIFACT_TYPES = SUBJECT_TYPES | REFERRER_TYPES
ARTIFACT_ALIASES = {"any": SUBJECT_TYPES, "referrers": REFERRER_TYPES}

KEEP_KINDS = ("latest_pushed", "latest_pulled", "pushed_within_days", "pulled_within_days", "always",
              "semver_line")
SEMVER_LINES = ("major", "minor")


@dataclass(frozen=True)
class Keep:
    kind: str  # one of KEEP_KINDS
    number: int = 0  # N of latest_* and semver_line, D of *_within_days; 0 for always
    per: str = ""  # semver_line: "major" or "minor"

    def describe(self) -> str:
        if self.kind == "always":
            return "always"
        if self.kind == "semver_line":
            return f"the newest {self.number} of each {self.per} line"
        if self.kind.endswith("_days"):
            return f"{self.kind.removesuffix('_days').replace('_', ' ')} {self.number} days"
        return f"the {self.number} {self.kind.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "always":
            return {"always": True}
        if self.kind == "semver_line":
            return {"semver_line": {"per": self.per, "count": self.number}}
        return {self.kind: self.number}


@dataclass(frozen=True)
class Rule:
    id: str  # the rule's path in the document: "rules[2]", "overrides[0].rules[1]"
    repositories: Glob
    tags: TagSelector
    artifacts: frozenset[str]
    keep: Keep

    @property
    def selects_referrers(self) -> bool:
        return bool(self.artifacts & REFERRER_TYPES)

    def describe(self) -> str:
        kinds = ",".join(sorted(self.artifacts))
        return (f"{self.id}: keep {self.keep.describe()} of repositories {self.repositories}, "
                f"tags {self.tags.describe()}, artifacts {kinds}")

    def to_dict(self) -> dict[str, Any]:
        return {"repositories": str(self.repositories), "tags": self.tags.to_dict(),
                "artifacts": sorted(self.artifacts), "keep": self.keep.to_dict()}


@dataclass(frozen=True)
class RuleSet:
    """The rules and untagged-manifest setting that apply to a repository."""

    id: str  # "" for the tenant's own, "overrides[i]" for an override
    rules: tuple[Rule, ...] = ()
    untagged_days: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": [r.to_dict() for r in self.rules]}
        if self.untagged_days is not None:
            out["untagged_days"] = self.untagged_days
        return out


@dataclass(frozen=True)
class Override:
    repositories: Glob
    rules: RuleSet

    @property
    def specificity(self) -> tuple[int, int]:
        """(literal characters, minus wildcards): more literals win, then fewer wildcards."""
        pattern = self.repositories.pattern
        return _literal_chars(pattern), -sum(pattern.count(c) for c in "*?[")


@dataclass(frozen=True)
class Policy:
    default: RuleSet = RuleSet("")
    overrides: tuple[Override, ...] = ()

    def for_repository(self, repository: str) -> RuleSet:
        """The rule set that applies to `repository` (module docstring: most specific override)."""
        best: Override | None = None
        for override in self.overrides:
            if override.repositories.matches(repository) and (
                    best is None or override.specificity > best.specificity):
                best = override
        return best.rules if best is not None else self.default

    @property
    def is_empty(self) -> bool:
        """True when the policy can delete nothing at all."""
        sets = (self.default, *(o.rules for o in self.overrides))
        return all(not s.rules and s.untagged_days is None for s in sets)

    def to_dict(self) -> dict[str, Any]:
        out = self.default.to_dict()
        if self.overrides:
            out["overrides"] = [{"repositories": str(o.repositories), **o.rules.to_dict()}
                                for o in self.overrides]
        return out


EMPTY_POLICY = Policy()


def _literal_chars(pattern: str) -> int:
    count, i = 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            count, i = count + 1, i + 2
            continue
        if c == "[":  # a class is one character, not a literal one
            end = pattern.find("]", i + 2)
            i = end + 1 if end > 0 else len(pattern)
            continue
        if c not in "*?":
            count += 1
        i += 1
    return count


def parse_policy(doc: Any) -> Policy:
    """Validate a policy document (module docstring). Raises RetentionError with every problem."""
    if not isinstance(doc, dict):
        raise RetentionError("a retention policy must be a JSON object")
    errors: dict[str, str] = {}
    _unknown(doc, {"rules", "untagged_days", "overrides"}, "", errors)
    default = _rule_set(doc, "", "", errors)
    overrides: list[Override] = []
    raw = doc.get("overrides", [])
    if not isinstance(raw, list):
        errors["overrides"] = "must be a list"
    elif len(raw) > MAX_OVERRIDES:
        errors["overrides"] = f"at most {MAX_OVERRIDES} overrides"
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            where = f"overrides[{i}]"
            if not isinstance(item, dict):
                errors[where] = "must be an object"
                continue
            _unknown(item, {"repositories", "rules", "untagged_days"}, where, errors)
            glob = parse_glob(item.get("repositories"), f"{where}.repositories", errors)
            rules = _rule_set(item, where, where, errors)
            if glob is None:
                continue
            if glob.pattern in seen:
                errors[f"{where}.repositories"] = f"the same repositories as overrides[{seen[glob.pattern]}]"
                continue
            seen[glob.pattern] = i
            overrides.append(Override(glob, rules))
    if errors:
        raise RetentionError(errors)
    return Policy(default, tuple(overrides))


def _rule_set(raw: dict, where: str, id_: str, errors: dict[str, str]) -> RuleSet:
    rules_at = _join(where, "rules")
    items = raw.get("rules", [])
    rules: list[Rule] = []
    if not isinstance(items, list):
        errors[rules_at] = "must be a list of rules"
    elif len(items) > MAX_RULES:
        errors[rules_at] = f"at most {MAX_RULES} rules"
    else:
        for i, item in enumerate(items):
            rule = _rule(item, f"{rules_at}[{i}]", errors)
            if rule is not None:
                rules.append(rule)
    untagged = None
    if raw.get("untagged_days") is not None:
        untagged = _number(raw["untagged_days"], _join(where, "untagged_days"), MAX_DAYS, errors)
    return RuleSet(id_, tuple(rules), untagged)


def _rule(raw: Any, where: str, errors: dict[str, str]) -> Rule | None:
    if not isinstance(raw, dict):
        errors[where] = "must be an object"
        return None
    before = len(errors)
    _unknown(raw, {"repositories", "tags", "artifacts", "keep"}, where, errors)
    repositories = parse_glob(raw.get("repositories", "**"), f"{where}.repositories", errors)
    tags = None
    if "tags" not in raw:
        errors[f"{where}.tags"] = 'required: {"glob": "**"} selects every tag'
    else:
        tags = parse_tag_selector(raw["tags"], f"{where}.tags", errors)
    artifacts = parse_artifacts(raw.get("artifacts", "any"), f"{where}.artifacts", errors)
    keep = _keep(raw.get("keep"), f"{where}.keep", errors)
    if len(errors) > before or repositories is None or tags is None or keep is None:
        return None
    return Rule(where, repositories, tags, artifacts, keep)


def parse_artifacts(raw: Any, where: str, errors: dict[str, str]) -> frozenset[str]:
    names = [raw] if isinstance(raw, str) else raw
    known = sorted(ARTIFACT_TYPES | set(ARTIFACT_ALIASES))
    if not isinstance(names, list) or not names or len(names) > len(known):
        errors[where] = f"must be an artifact type or a non-empty list of them ({', '.join(known)})"
        return frozenset()
    out: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str):  # a list or object is unhashable: no lookup before this check
            errors[f"{where}[{i}]" if isinstance(raw, list) else where] = (
                f"must be a string, one of {', '.join(known)}")
        elif name in ARTIFACT_ALIASES:
            out |= ARTIFACT_ALIASES[name]
        elif name in ARTIFACT_TYPES:
            out.add(name)
        else:
            errors[f"{where}[{i}]" if isinstance(raw, list) else where] = (
                f"unknown artifact type {str(name)[:40]!r} (one of {', '.join(known)})")
    return frozenset(out)


def _keep(raw: Any, where: str, errors: dict[str, str]) -> Keep | None:
    if raw is None:
        errors[where] = f"required: an object with one of {', '.join(KEEP_KINDS)}"
        return None
    kinds = [k for k in KEEP_KINDS if isinstance(raw, dict) and k in raw]
    if not isinstance(raw, dict) or len(kinds) != 1:
        errors[where] = f"must be an object with exactly one of {', '.join(KEEP_KINDS)}"
        return None
    _unknown(raw, set(KEEP_KINDS), where, errors)
    kind = kinds[0]
    value = raw[kind]
    at = f"{where}.{kind}"
    if kind == "always":
        if value is not True:
            errors[at] = "must be true"
            return None
        return Keep(kind)
    if kind == "semver_line":
        if not isinstance(value, dict):
            errors[at] = 'must be an object {"per": "major" | "minor", "count": N}'
            return None
        _unknown(value, {"per", "count"}, at, errors)
        per = value.get("per")
        if per not in SEMVER_LINES:
            errors[f"{at}.per"] = 'must be "major" or "minor"'
        count = _number(value.get("count"), f"{at}.count", MAX_COUNT, errors)
        return Keep(kind, count, per) if count and per in SEMVER_LINES else None
    number = _number(value, at, MAX_DAYS if kind.endswith("_days") else MAX_COUNT, errors)
    return Keep(kind, number) if number else None


def _number(value: Any, where: str, maximum: int, errors: dict[str, str]) -> int:
    if type(value) is not int or not 1 <= value <= maximum:
        errors[where] = f"must be a whole number from 1 to {maximum}"
        return 0
    return value


def _unknown(raw: dict, allowed: set[str], path: str, errors: dict[str, str]) -> None:
    for key in raw:
        if key not in allowed:
            errors[_join(path, str(key)[:64])] = "unknown field"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
