#!/usr/bin/env python3
"""The numbers of issue 14's closing note, measured on the working tree:

- the largest module (lines) and the largest class (lines, from `class` to its last line);
- the most public methods on one class of hub/db, counted through its MRO (mixins and bases included);
- SQL string literals that appear in both dialects' files once normalised (`?`, `$n`, `%s` -> `?`, `::casts`
  dropped, whitespace and case folded); a dialect file is a hub/db module whose name holds sqlite or postgres;
- upward imports: the import statements that break tests/unit/test_import_rules.py's layer rules (R1-R4),
  plus the domain-edge and private-name imports (R5) and the cycles (R6).

Run: .venv/bin/python scripts/structure_report.py [--json]
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit import test_import_rules as rules  # noqa: E402

METHOD_TYPES = (types.FunctionType, staticmethod, classmethod)
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|DROP|ALTER|REPLACE|UPSERT)\b", re.I)


def largest_module() -> tuple[str, int]:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in rules.sources().values()}
    name = max(sizes, key=sizes.__getitem__)
    return name, sizes[name]


def largest_class() -> tuple[str, int]:
    best = ("", 0)
    for module in rules.sources():
        for node in ast.walk(rules.tree(module)):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > best[1]:
                    best = (f"{module}.{node.name}", size)
    return best


def public_methods(cls: type) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ in ("typing", "abc", "builtins"):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and isinstance(value, METHOD_TYPES):
                names.add(name)
    return names


def widest_store() -> tuple[str, int]:
    best = ("", 0)
    for module in rules.sources():
        if not rules.within(module, "hub.db"):
            continue
        loaded = importlib.import_module(module)
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if cls.__module__ == module:
                count = len(public_methods(cls))
                if count > best[1]:
                    best = (f"{module}.{cls.__name__}", count)
    return best


def normalise_sql(text: str) -> str:
    text = re.sub(r"::\s*[a-z_]+(\s*\[\])?", "", text, flags=re.I)          # ::bigint, ::text[]
    text = re.sub(r"\$\d+|%s|\?", "?", text)
    return " ".join(text.split()).lower()


def sql_literals(module: str) -> list[str]:
    found = []
    for node in ast.walk(rules.tree(module)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):                                 # f-strings: {…} as a hole
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        else:
            continue
        if SQL_START.match(text):
            found.append(normalise_sql(text))
    return found


def sql_written_twice() -> dict[str, int]:
    by_dialect: dict[str, set[str]] = {"sqlite": set(), "postgres": set()}
    literals: Counter[str] = Counter()
    for module in rules.sources():
        dialect = rules._dialect(module) if rules.within(module, "hub.db") else None
        if dialect:
            found = sql_literals(module)
            by_dialect[dialect].update(found)
            literals[dialect] += len(found)
    return {"sqlite_literals": literals["sqlite"], "postgres_literals": literals["postgres"],
            "in_both": len(by_dialect["sqlite"] & by_dialect["postgres"])}


def upward_imports() -> dict[str, int]:
    edges = rules.edges()
    found = rules.import_violations(edges)
    statements = {(v.rule, v.module, v.line) for v in found}
    by_rule = Counter(rule for rule, _, _ in statements)
    return {"upward_imports": sum(by_rule[r] for r in ("R1", "R2", "R3", "R4")),
            "domain_or_private_imports": by_rule["R5"], "cycles": len(rules.cycle_violations(edges)),
            "store_attribute_reads": len(rules.attribute_violations())}


def report() -> dict[str, object]:
    module, module_lines = largest_module()
    cls, class_lines = largest_class()
    store, methods = widest_store()
    return {"largest_module": module, "largest_module_lines": module_lines, "largest_class": cls,
            "largest_class_lines": class_lines, "widest_store": store, "widest_store_methods": methods,
            **sql_written_twice(), **upward_imports()}


def main() -> None:
    numbers = report()
    if "--json" in sys.argv:
        print(json.dumps(numbers, indent=2))
        return
    print(f"largest module        {numbers['largest_module']} ({numbers['largest_module_lines']} lines)")
    print(f"largest class         {numbers['largest_class']} ({numbers['largest_class_lines']} lines)")
    print(f"widest store class    {numbers['widest_store']} "
          f"({numbers['widest_store_methods']} public methods)")
    print(f"SQL written twice     {numbers['in_both']} literals in both dialects "
          f"(of {numbers['sqlite_literals']} SQLite / {numbers['postgres_literals']} PostgreSQL)")
    print(f"upward imports        {numbers['upward_imports']} statements (R1-R4), "
          f"{numbers['domain_or_private_imports']} domain-edge or private-name imports (R5), "
          f"{numbers['cycles']} cycles (R6), "
          f"{numbers['store_attribute_reads']} store/driver attribute reads (R7)")


if __name__ == "__main__":
    main()
