"""The layer rules of docs/architecture.md, checked on the import graph of hub/, auth/, appstore/ and
storage_backends/ (every `import` in the file, including those inside functions and under TYPE_CHECKING;
relative imports resolved).

Layers, bottom up: L0 foundation, L1 metadata (hub.db), L2 domain, L3 HTTP, L4 wiring (LAYERS).
- R1  no import from a higher layer.
- R2  the HTTP layer imports no store (hub.db, except `hub.db.*.records`) and no storage driver
      (storage_backends, except storage_backends.errors).
- R3  L0 to L2 never import aiohttp.web (the proxy client may use aiohttp's client);
      hub.config imports only L0.
- R4  in hub.db: SQLite and PostgreSQL code never import each other; an area package
      (hub.db.registry, identity, cache, apps) imports only hub.db.engine, itself and other areas' records.
- R5  domain packages import only the domain packages of DOMAIN_EDGES; no `_private` name is imported from
      another module.
- R6  no cycles in the module graph (Tarjan's strongly connected components).
- R7  nothing outside hub.db, hub.registry, storage_backends and the app factory reads `.store`, `._store`,
      `.storage` or `._storage` (services are called through their public methods).

KNOWN holds today's violations. It only shrinks: the test fails on a violation that is not in KNOWN, and on a
KNOWN entry that no longer happens (delete it then). Entries name modules, never line numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "auth", "appstore", "storage_backends")
LAYER_NAMES = {0: "L0 foundation", 1: "L1 metadata", 2: "L2 domain", 3: "L3 HTTP", 4: "L4 wiring"}

# Module prefix -> layer; the longest prefix (by dotted component) wins. Some packages do not exist yet.
LAYERS: dict[str, int] = {
    "storage_backends": 0, "hub.errors": 0, "hub.problems": 0, "hub.safejson": 0, "hub.metrics": 0,
    "hub.logs": 0, "hub.secret": 0, "hub.background": 0,
    "hub.actor": 0,                                       # who the request acts as (a context variable)
    "hub.events.cloudevents": 0, "hub.events.signing": 0, "hub.events.netguard": 0,  # formats, no store
    "hub.proxy.settings": 0, "hub.proxy.names": 0,       # plain values that hub.config builds and checks
    "hub.registry.names": 0,                              # the OCI name grammar (config checks names)
    "auth.provider_settings": 0,                          # identity provider settings that hub.config checks
    "hub.db": 1,                                          # engine, registry, identity, cache, apps, state
    "auth": 2, "hub.registry": 2, "hub.tenancy": 2, "hub.proxy": 2, "appstore": 2,
    "hub.retention": 2,
    "hub.events": 2,                                      # webhooks: subscriptions and delivery                                   # retention rules and immutable tags: pure, no store
    "hub.handlers": 3, "hub.web": 3, "hub.middlewares": 3, "hub.authz": 3, "hub.routes": 3, "hub.keys": 3,
    "hub.clientaddr": 3, "hub.relay": 3, "hub.config": 3,
    "hub.app": 4, "hub.cli": 4, "hub.tls": 4, "hub.transfer": 4, "hub.seed_catalog": 4, "hub.__main__": 4,
    "hub": 4,                                             # the rest of hub/ (today's cli_*.py)
}
HTTP_STORE_EXCEPTIONS = ("storage_backends.errors",)      # plus any hub.db module named `records`
DB_AREAS = ("hub.db.registry", "hub.db.identity", "hub.db.cache", "hub.db.apps")
DOMAIN_PACKAGES = ("auth", "hub.registry", "hub.tenancy", "hub.proxy", "appstore")
DOMAIN_EDGES = {"hub.proxy": {"hub.registry", "auth"}, "appstore": {"hub.registry", "auth"},
                "hub.tenancy": {"hub.registry", "auth"}, "hub.registry": set(), "auth": set()}
STORE_ATTRIBUTES = {"store", "_store", "storage", "_storage"}
STORE_ATTRIBUTE_OWNERS = ("hub.db", "hub.registry", "storage_backends", "hub.app")

# (rule, module, what) for today's violations. Delete an entry when its violation is gone; never add one.
KNOWN: set[tuple[str, str, str]] = {
    # R1 upward imports (§3.3: CatalogScope moves to hub.db.registry.records)
    ('R1', 'hub.db.base', 'auth.policy'),
    ('R1', 'hub.db.postgres', 'auth.policy'),
    ('R1', 'hub.db.sqlite', 'auth.policy'),
    # R2 HTTP code importing stores or drivers (steps 5b, 5a, 6)
    ('R2', 'hub.keys', 'hub.db.base'),
    ('R2', 'hub.keys', 'storage_backends.base'),
    ('R2', 'hub.relay', 'storage_backends.base'),
    ('R2', 'hub.relay', 'storage_backends.plainhttp'),
    # R4 PostgreSQL code importing SQLite code (step 4d, 4c)
    ('R4', 'hub.db.postgres_identity', 'hub.db.sqlite_identity'),
    ('R4', 'hub.db.postgres_proxy', 'hub.db.sqlite_proxy'),
    # R5 domain edges and _private names imported from another module
    ('R5', 'appstore.rancher', 'appstore.model._app_info'),
    ('R5', 'appstore.rancher', 'appstore.model._inside'),
    ('R5', 'appstore.rancher', 'appstore.model._read_text'),
    ('R5', 'appstore.rancher', 'appstore.model._yaml_file'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._REFRESH_COLUMNS'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._ROBOT_COLUMNS'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._USER_COLUMNS'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._robot'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._summary'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._tenant_range'),
    ('R5', 'hub.db.postgres_identity', 'hub.db.sqlite_identity._user'),
    ('R5', 'hub.proxy.service', 'hub.registry.service._quota_denied'),
    ('R5', 'hub.registry.service', 'auth.policy'),
    # R7 another service's store or driver read through an attribute (steps 5a-5d, 6)
    ('R7', 'appstore.catalog', '.store'),
    ('R7', 'appstore.service', '.store'),
    ('R7', 'hub.cli.gc', '.store'),
    ('R7', 'hub.cli.identity', '.store'),
    ('R7', 'hub.cli.proxy', '.store'),
    ('R7', 'hub.cli.seed', '.store'),
    ('R7', 'hub.handlers.blobs', '.storage'),
    ('R7', 'hub.proxy.eviction', '.storage'),
    ('R7', 'hub.proxy.eviction', '.store'),
    ('R7', 'hub.proxy.service', '.store'),
}


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str          # importing module
    target: str          # imported module (ours: an existing module or package; others: as written)
    names: tuple[str, ...]  # the names of `from target import …`
    line: int


@dataclasses.dataclass(frozen=True)
class Violation:
    rule: str
    module: str
    what: str
    line: int
    why: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.module, self.what)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path)] = path
    return found


@cache
def tree(module: str) -> ast.Module:
    path = sources()[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def ours(name: str) -> bool:
    return name.split(".", 1)[0] in PACKAGES


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def longest(name: str, prefixes) -> str | None:
    matching = [p for p in prefixes if within(name, p)]
    return max(matching, key=len) if matching else None


def layer(module: str) -> int:
    prefix = longest(module, LAYERS)
    assert prefix is not None, f"{module} has no layer: add its prefix to LAYERS in {__file__}"
    return LAYERS[prefix]


def _resolve_base(module: str, level: int, written: str | None) -> str:
    if not level:
        return written or ""
    package = module if sources()[module].name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{written}" if written else base


def edges_of(module: str) -> Iterator[Edge]:
    for node in ast.walk(tree(module)):          # walk: function-level and TYPE_CHECKING imports count
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, node.level, node.module)
            plain = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in sources() or (base == "aiohttp" and alias.name.startswith("web")):
                    yield Edge(module, sub, (), node.lineno)     # `from .. import safejson` -> hub.safejson
                else:
                    plain.append(alias.name)
            by_target: dict[str, list[str]] = {}
            for name in plain:                   # a name a package re-exports counts as its submodule's
                by_target.setdefault(reexports(base).get(name, base), []).append(name)
            for target, names in by_target.items():
                yield Edge(module, target, tuple(names), node.lineno)


@cache
def reexports(package: str) -> dict[str, str]:
    """Names that package's __init__ imports from its own submodules at top level: name -> submodule."""
    if package not in sources() or sources()[package].name != "__init__.py":
        return {}
    found = {}
    for node in tree(package).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = _resolve_base(package, node.level, node.module)
            if base in sources() and within(base, package):
                found.update({alias.asname or alias.name: base for alias in node.names})
    return found


def edges() -> list[Edge]:
    return [edge for module in sources() for edge in edges_of(module)]


def graph(all_edges: list[Edge]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {module: set() for module in sources()}
    for edge in all_edges:
        if edge.target in sources() and edge.target != edge.source:
            out[edge.source].add(edge.target)
    return out


def strongly_connected(out: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); only the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(out):
        if root in index:
            continue
        work = [(root, iter(sorted(out[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(out[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _is_records(target: str) -> bool:
    return within(target, "hub.db") and target.rsplit(".", 1)[-1] == "records"


def _dialect(module: str) -> str | None:
    last = module.rsplit(".", 1)[-1]
    return "sqlite" if "sqlite" in last else "postgres" if "postgres" in last else None


def import_violations(all_edges: list[Edge]) -> list[Violation]:
    found = []
    for edge in all_edges:
        source, target = edge.source, edge.target
        if not ours(target):
            if layer(source) <= 2 and (within(target, "aiohttp.web") or target.startswith("aiohttp.web_")):
                found.append(Violation("R3", source, target, edge.line, "below HTTP: no aiohttp.web"))
            continue
        if target not in sources():
            continue                                       # a module that does not exist: not ours to judge
        low, high = layer(source), layer(target)
        if low < high:
            found.append(Violation("R1", source, target, edge.line,
                                   f"{LAYER_NAMES[low]} imports {LAYER_NAMES[high]}"))
        below = within(target, "hub.db") or within(target, "storage_backends")
        if low == 3 and source != "hub.config" and below:
            if not _is_records(target) and target not in HTTP_STORE_EXCEPTIONS:
                found.append(Violation("R2", source, target, edge.line, "HTTP imports a store or driver"))
        if source == "hub.config" and high != 0:
            found.append(Violation("R3", source, target, edge.line, "hub.config imports only L0"))
        if within(source, "hub.db") and within(target, "hub.db"):
            pair = {_dialect(source), _dialect(target)}
            if pair == {"sqlite", "postgres"}:
                found.append(Violation("R4", source, target, edge.line, "one dialect imports the other"))
            area = longest(source, DB_AREAS)
            if area and not (within(target, "hub.db.engine") or within(target, area) or _is_records(target)):
                found.append(Violation("R4", source, target, edge.line,
                                       "an area imports only hub.db.engine, itself and other areas' records"))
        mine, theirs = longest(source, DOMAIN_PACKAGES), longest(target, DOMAIN_PACKAGES)
        if low == high == 2 and mine and theirs and mine != theirs and theirs not in DOMAIN_EDGES[mine]:
            allowed = sorted(DOMAIN_EDGES[mine]) or "no other domain"
            found.append(Violation("R5", source, target, edge.line, f"{mine} may import only {allowed}"))
        if mine == "auth" and within(target, "hub") and not _is_records(target) and high != 0:
            found.append(Violation("R5", source, target, edge.line, "auth imports only L0 and records"))
        for name in edge.names:
            if name.startswith("_") and not name.startswith("__") and target != source:
                found.append(Violation("R5", source, f"{target}.{name}", edge.line,
                                       "a _private name imported from another module"))
    return found


def attribute_violations() -> list[Violation]:
    found = []
    for module in sources():
        if any(within(module, owner) for owner in STORE_ATTRIBUTE_OWNERS):
            continue
        for node in ast.walk(tree(module)):
            if isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES and not _own(node.value):
                found.append(Violation("R7", module, f".{node.attr}", node.lineno,
                                       "a store or storage driver reached through an attribute"))
    return found


def _own(value: ast.expr) -> bool:
    """`self.store` (a service's own store) and `config.storage` (a config section) reach around nothing."""
    name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
    return name in ("self", "cls") or re.search(r"(^|_)(config|cfg|settings)$", name) is not None


def cycle_violations(all_edges: list[Edge]) -> list[Violation]:
    return [Violation("R6", component[0], " <-> ".join(component), 0, "an import cycle")
            for component in strongly_connected(graph(all_edges))]


def all_violations() -> list[Violation]:
    all_edges = edges()
    return import_violations(all_edges) + attribute_violations() + cycle_violations(all_edges)


FIXES = {
    "R1": "import downward only: move the shared piece to a lower layer, or pass it in as an argument",
    "R2": "call a service (Registry, AuthService, Administration, AppStore, Proxy), not a store or driver",
    "R3": "take a settings object (hub.proxy.settings, hub.secret), not hub.config; aiohttp.web stays in L3",
    "R4": "share through hub.db.engine or an area's records module",
    "R5": "go through the other package's public API (make the name public there if it is one)",
    "R6": "break the cycle: move what both need into a third module, or pass it as an argument",
    "R7": "add a public method to the owning service instead of reaching its store or driver",
}


def _explain(new: list[Violation], gone: set[tuple[str, str, str]]) -> str:
    lines = []
    for v in sorted(new, key=lambda v: (v.rule, v.module, v.line)):
        path = sources()[v.module].relative_to(ROOT)
        where = f"{path}:{v.line}" if v.line else str(path)
        lines.append(f"  NEW {v.rule} {where}: {v.module} -> {v.what} ({v.why}). Fix: {FIXES[v.rule]}.")
    for key in sorted(gone):
        lines.append(f"  GONE {key!r}: no longer happens; delete this entry from KNOWN in {__name__}.")
    if new and gone:
        lines.append("  A module that moved shows up as NEW plus GONE: rename its KNOWN entries in the "
                     "commit that moves it (that adds no violation).")
    return "import rules (docs/architecture.md):\n" + "\n".join(lines)


def _check(rules: set[str]) -> None:
    found = [v for v in all_violations() if v.rule in rules]
    keys = {v.key for v in found}
    new = [v for v in found if v.key not in KNOWN]
    gone = {key for key in KNOWN if key[0] in rules} - keys
    assert not new and not gone, _explain(new, gone)


def test_layers():
    _check({"R1", "R2", "R3", "R4"})


def test_domain_edges_and_private_names():
    _check({"R5"})


def test_no_cycles():
    _check({"R6"})


def test_no_store_or_driver_attributes_outside_their_owners():
    _check({"R7"})


def test_every_module_has_a_layer_and_known_is_well_formed():
    for module in sources():
        layer(module)
    assert all(rule in FIXES and isinstance(module, str) for rule, module, _ in KNOWN)


def _clear_caches() -> None:
    for cached in (sources, tree, reexports):
        cached.cache_clear()


# The checker itself, on a small tree of its own.
def test_the_checker_sees_relative_lazy_and_type_checking_imports(tmp_path, monkeypatch):
    files = {
        "hub/__init__.py": "",
        "hub/config.py": "",
        "hub/db/__init__.py": "",
        "hub/db/sqlite.py": "",
        "hub/db/postgres.py": "from .sqlite import _row\n",
        "hub/db/registry/__init__.py": "from ..identity import users\nfrom ..identity.records import User\n",
        "hub/db/identity/__init__.py": "",
        "hub/db/identity/users.py": "",
        "hub/db/identity/records.py": "",
        "hub/proxy/__init__.py": "",
        "hub/proxy/service.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from ..config import X\n"
                                 "def f():\n    from .. import config\n    return registry.store\n"),
        "hub/proxy/settings.py": "from aiohttp import web\n",
        "hub/handlers/__init__.py": "",
        "hub/handlers/a.py": ("import hub.db.identity.users\nfrom hub.db.identity import records\n"
                              "from . import b\n"),
        "hub/handlers/b.py": "from .a import thing\n",
        "auth/__init__.py": "",
        "appstore/__init__.py": "",
        "storage_backends/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    _clear_caches()
    try:
        keys = {v.key for v in all_violations()}
    finally:
        _clear_caches()
    assert keys == {
        ("R1", "hub.proxy.service", "hub.config"),          # TYPE_CHECKING and function-level, relative
        ("R3", "hub.proxy.settings", "aiohttp.web"),
        ("R2", "hub.handlers.a", "hub.db.identity.users"),         # records are allowed
        ("R4", "hub.db.postgres", "hub.db.sqlite"),
        ("R5", "hub.db.postgres", "hub.db.sqlite._row"),
        ("R4", "hub.db.registry", "hub.db.identity.users"),
        ("R6", "hub.handlers.a", "hub.handlers.a <-> hub.handlers.b"),
        ("R7", "hub.proxy.service", ".store"),
    }


if __name__ == "__main__":                       # python tests/unit/test_import_rules.py: today's violations
    for v in sorted(all_violations(), key=lambda v: (v.rule, v.module, v.line)):
        print(f"{v.rule} {sources()[v.module].relative_to(ROOT)}:{v.line} {v.module} -> {v.what}  ({v.why})")
