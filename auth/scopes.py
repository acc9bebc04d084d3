"""Docker token-auth scopes: ``type:name:action[,action...]``.

The name may itself contain ``host:port`` (``repository:localhost:5000/team/app:pull``),
so a scope is split on its FIRST and LAST colon only.  As in distribution, what
we do not understand is dropped rather than rejected: an unknown type, an
unknown action, or a malformed string simply grants nothing.  Nothing here
raises; :func:`split_scopes` reports the strings it dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "CATALOG",
    "DELETE",
    "PULL",
    "PUSH",
    "REGISTRY",
    "REPOSITORY",
    "REPOSITORY_ACTIONS",
    "ResourceScope",
    "format_challenge_scope",
    "parse_scope",
    "parse_scopes",
    "split_scopes",
]

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"
PULL, PUSH, DELETE, ALL = "pull", "push", "delete", "*"
#: Canonical order, used when formatting challenges (``pull,push`` as clients expect).
REPOSITORY_ACTIONS: tuple[str, ...] = (PULL, PUSH, DELETE)
_REGISTRY_ACTIONS = frozenset({ALL})
MAX_SCOPE_LENGTH = 1024


@dataclass(frozen=True)
class ResourceScope:
    """One resource and the actions on it; ``actions`` never contains ``*`` for repositories."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(_ordered(self.actions))}"

    def to_claim(self) -> dict[str, Any]:
        """The JWT ``access`` entry: ``{"type", "name", "actions": sorted list}``."""
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}

    @classmethod
    def from_claim(cls, claim: Mapping[str, Any]) -> ResourceScope | None:
        """Inverse of :meth:`to_claim`; None when *claim* is not a well-formed entry."""
        if not isinstance(claim, Mapping):
            return None
        rtype, name, actions = claim.get("type"), claim.get("name"), claim.get("actions")
        if not isinstance(rtype, str) or not isinstance(name, str) or not isinstance(actions, list):
            return None
        if not all(isinstance(a, str) for a in actions):
            return None
        return _build(rtype, name, actions)

    def with_actions(self, actions: Iterable[str]) -> ResourceScope:
        return ResourceScope(self.type, self.name, frozenset(actions))


def _ordered(actions: Iterable[str]) -> list[str]:
    """Canonical order first (pull, push, delete), then anything else sorted."""
    acts = set(actions)
    head = [a for a in REPOSITORY_ACTIONS if a in acts]
    return head + sorted(acts.difference(REPOSITORY_ACTIONS))


def _valid_name(name: str) -> bool:
    # Full grammar checks belong to the registry layer; here only what would
    # make the scope ambiguous or unprintable.
    return bool(name) and name.isprintable() and not any(c.isspace() for c in name)


def _build(rtype: str, name: str, actions: Iterable[str]) -> ResourceScope | None:
    if not _valid_name(name):
        return None
    acts = {a.strip() for a in actions}
    if rtype == REPOSITORY:
        if ALL in acts:
            acts.update(REPOSITORY_ACTIONS)
        known = frozenset(acts.intersection(REPOSITORY_ACTIONS))
    elif rtype == REGISTRY and name == CATALOG:
        known = frozenset(acts & _REGISTRY_ACTIONS)
    else:
        return None  # unknown type (or registry resource other than the catalog)
    return ResourceScope(rtype, name, known) if known else None


def parse_scope(scope: str) -> ResourceScope | None:
    """Parse one ``type:name:actions`` string; None when malformed or granting nothing.

    ``repository:localhost:5000/team/app:pull,push`` gives type ``repository``,
    name ``localhost:5000/team/app`` and actions ``{pull, push}``; ``*`` on a
    repository means pull, push and delete.
    """
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_LENGTH:
        return None
    first, last = scope.find(":"), scope.rfind(":")
    if first <= 0 or last == first:
        return None
    rtype, name, actions = scope[:first], scope[first + 1 : last], scope[last + 1 :]
    if not actions:
        return None
    return _build(rtype, name, actions.split(","))


def split_scopes(raw: Iterable[str]) -> tuple[list[ResourceScope], list[str]]:
    """Parse and merge scopes, returning ``(scopes, dropped)``.

    Each item may hold several space-separated scopes (the OAuth2 form's
    ``scope`` field does).  Scopes naming the same ``(type, name)`` are merged
    by union of actions, in order of first appearance.  ``dropped`` lists the
    strings that granted nothing (malformed, unknown type, no known action),
    for logging.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    dropped: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            dropped.append(repr(item))
            continue
        for part in item.split():
            parsed = parse_scope(part)
            if parsed is None:
                dropped.append(part)
                continue
            merged.setdefault((parsed.type, parsed.name), set()).update(parsed.actions)
    scopes = [ResourceScope(t, n, frozenset(a)) for (t, n), a in merged.items()]
    return scopes, dropped


def parse_scopes(raw: Iterable[str]) -> list[ResourceScope]:
    """Like :func:`split_scopes` without the report of dropped strings."""
    return split_scopes(raw)[0]


def format_challenge_scope(name: str, actions: Iterable[str]) -> str:
    """The ``scope`` of a ``WWW-Authenticate`` challenge: ``repository:<name>:pull,push``."""
    return f"{REPOSITORY}:{name}:{','.join(_ordered(actions))}"
