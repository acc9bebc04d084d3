"""Immutable-tag rules: a tag they match cannot be moved, re-pushed with other content or deleted.

The document, per tenant::

    {"rules": [{"repositories": GLOB, "tags": TAG_SELECTOR}, ...]}   # at most MAX_RULES

with the selectors of retention rules (selectors.py): ``{"repositories": "team/**", "tags":
{"semver": ">=1.0.0"}}`` makes every release of 1.0.0 and later in team/ immutable. `protects`
names the first rule, in document order, that matches a tag, and `refusal` writes the message
the registry will answer a refused push or delete with. `guard` is what the store calls inside
the transaction that would move or delete a tag (hub/db/immutable_store.py), with the tenant's
document as stored; retention's engine reports such tags as "protected" and never plans their
delete.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from .errors import RetentionError
from .selectors import Glob, TagSelector, parse_glob, parse_tag_selector

MAX_RULES = 100


@dataclass(frozen=True)
class ImmutableRule:
    number: int  # 1-based, as a person counts them in a message; the document path is rules[number - 1]
    repositories: Glob
    tags: TagSelector

    def matches(self, repository: str, tag: str) -> bool:
        return self.repositories.matches(repository) and self.tags.matches(tag)

    def describe(self) -> str:
        return f"rule {self.number}: repositories {self.repositories}, tags {self.tags.describe()}"

    def to_dict(self) -> dict[str, Any]:
        return {"repositories": str(self.repositories), "tags": self.tags.to_dict()}


def parse_immutable_rules(doc: Any) -> tuple[ImmutableRule, ...]:
    """Validate an immutable-tag document. Raises RetentionError with every problem, keyed by path."""
    if not isinstance(doc, dict):
        raise RetentionError("immutable-tag rules must be a JSON object")
    errors: dict[str, str] = {}
    for key in doc:
        if key != "rules":
            errors[str(key)[:64]] = "unknown field"
    raw = doc.get("rules", [])
    rules: list[ImmutableRule] = []
    if not isinstance(raw, list):
        errors["rules"] = "must be a list of rules"
    elif len(raw) > MAX_RULES:
        errors["rules"] = f"at most {MAX_RULES} rules"
    else:
        for i, item in enumerate(raw):
            where = f"rules[{i}]"
            if not isinstance(item, dict):
                errors[where] = "must be an object"
                continue
            for key in item:
                if key not in ("repositories", "tags"):
                    errors[f"{where}.{str(key)[:64]}"] = "unknown field"
            glob = parse_glob(item.get("repositories", "**"), f"{where}.repositories", errors)
            if "tags" not in item:
                errors[f"{where}.tags"] = "required"
                continue
            tags = parse_tag_selector(item["tags"], f"{where}.tags", errors)
            if glob is not None and tags is not None:
                rules.append(ImmutableRule(i + 1, glob, tags))
    if errors:
        raise RetentionError(errors)
    return tuple(rules)


def protects(rules: tuple[ImmutableRule, ...], repository: str, tag: str) -> ImmutableRule | None:
    """The first rule that makes `tag` of `repository` immutable, or None."""
    for rule in rules:
        if rule.matches(repository, tag):
            return rule
    return None


def refusal(rule: ImmutableRule, repository: str, tag: str) -> str:
    """'tag v1.2.0 of team/app is immutable (rule 2: repositories team/**, tags semver >=1.0.0)'."""
    return f"tag {tag} of {repository} is immutable ({rule.describe()})"


@functools.lru_cache(maxsize=256)
def _stored_rules(document: str) -> tuple[ImmutableRule, ...] | RetentionError:
    try:
        return parse_immutable_rules(json.loads(document))
    except (ValueError, RetentionError) as exc:
        return exc if isinstance(exc, RetentionError) else RetentionError(str(exc))


def tag_guard(app_versions: bool = False):
    """The store's TagGuard (hub/db/immutable_store.py): `guard(document, repository, tag,
    app_version)` is the refusal for changing `tag` of `repository`, or None.

    With `app_versions`, a tag that publishes an app version (its own tag in the app store's
    index) does not move: hub/app.py sets it unless appstore.immutable_versions is off. Then the
    tenant's stored rules, each document parsed once (a cache keyed by its text); one that no
    longer validates (written by another version) fails closed: every tag of the tenant is held
    until an admin sets the rules again."""
    def guard(document: str | None, repository: str, tag: str, app_version: str | None) -> str | None:
        if app_versions and app_version is not None:
            return (f"tag {tag} of {repository} publishes app version {app_version}: published versions are "
                    "immutable; publish a new version")
        if document is None:
            return None
        rules = _stored_rules(document)
        if isinstance(rules, RetentionError):
            return f"tag {tag} of {repository} is held: the tenant's immutable-tag rules do not validate ({rules})"
        rule = protects(rules, repository, tag)
        return None if rule is None else refusal(rule, repository, tag)

    return guard


guard = tag_guard()  # the tenants' rules only
