"""Every error code DaoHub can put in a 4xx body is one of the OCI distribution spec's list."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from aiohttp import web

import appstore
import auth
import hub
from hub.errors import OciError
from hub.middlewares import _from_http_exception

# OCI distribution spec v1.1, "Error Codes": "The code field MUST be one of the following".
SPEC_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
    "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})
ROOT = Path(hub.__file__).resolve().parent.parent


def _import_everything() -> None:
    for package in (hub, auth, appstore):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith(".__main__"):
                importlib.import_module(module.name)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_client_error_class_has_a_spec_code():
    _import_everything()
    classes = _subclasses(OciError)
    assert len(classes) > 15  # the walk found the errors of handlers, proxy and app store too
    wrong = {f"{c.__module__}.{c.__qualname__}": c.code for c in classes
             if c.status < 500 and c.code not in SPEC_CODES}
    assert wrong == {}


@pytest.mark.parametrize("exc_class", [c for c in _subclasses(web.HTTPException)
                                       if 400 <= getattr(c, "status_code", 0) < 600])
def test_http_exceptions_become_spec_codes(exc_class):
    required = {"method": "GET", "allowed_methods": ["GET"], "max_size": 1, "actual_size": 2,
                "link": "https://x"}
    params = inspect.signature(exc_class).parameters
    err = _from_http_exception(exc_class(**{k: v for k, v in required.items() if k in params}))
    assert err.status == exc_class.status_code
    if err.status < 500:
        assert err.body()["errors"][0]["code"] in SPEC_CODES


def test_no_code_is_assigned_outside_the_list():
    """An OciError's code set after construction (`err.code = "..."`) escapes the class walk above."""
    assigned = []
    for path in [*ROOT.joinpath("hub").rglob("*.py"), *ROOT.joinpath("appstore").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr == "code":
                        assigned.append((path.relative_to(ROOT).as_posix(), node.lineno, node.value.value))
    assert [a for a in assigned if a[2] not in SPEC_CODES] == []


MUTABLE = frozenset({"code", "status"})


def _instance_mutations(path: Path, error_classes: frozenset[str],
                        root: Path = ROOT) -> list[tuple[str, int, str]]:
    """`x.code = ...` / `x.status = ...` on anything but `self`, `self.code/status = ...` inside an
    error class, and `setattr(x, "code" | "status", ...)`."""
    found = []
    where = path.relative_to(root).as_posix()

    def visit(node: ast.AST, in_error_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_error_class
            if isinstance(child, ast.ClassDef):
                inside = child.name in error_classes
            targets = (child.targets if isinstance(child, ast.Assign)
                       else [child.target] if isinstance(child, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                for attribute in [t for t in ast.walk(target) if isinstance(t, ast.Attribute)]:
                    if attribute.attr in MUTABLE:
                        is_self = isinstance(attribute.value, ast.Name) and attribute.value.id == "self"
                        if not is_self or inside:
                            found.append((where, child.lineno, ast.unparse(attribute)))
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == "setattr"
                    and len(child.args) > 1 and isinstance(child.args[1], ast.Constant)
                    and child.args[1].value in MUTABLE):
                found.append((where, child.lineno, ast.unparse(child)))
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def test_no_error_code_or_status_is_set_on_an_instance():
    """Codes and statuses are class data (one class per answer, hub/errors.py): an error never has
    them changed after construction, so the class walk above sees every code that can be sent."""
    _import_everything()
    error_classes = frozenset(c.__name__ for c in [OciError, *_subclasses(OciError)])
    mutations = []
    for package in ("hub", "auth", "appstore", "storage_backends"):
        for path in sorted(ROOT.joinpath(package).rglob("*.py")):
            mutations += _instance_mutations(path, error_classes)
    assert mutations == []


def test_the_mutation_check_sees_each_form(tmp_path):
    source = tmp_path / "hub" / "example.py"
    source.parent.mkdir()
    source.write_text("class BlobUnknown(OciError):\n    def __init__(self):\n        self.status = 400\n"
                      "class Record:\n    def __init__(self):\n        self.code = 'x'\n"
                      "def f(err):\n    err.code = 'UNSUPPORTED'\n    err.status += 1\n"
                      "    setattr(err, 'status', 1)\n")
    found = _instance_mutations(source, frozenset({"BlobUnknown"}), tmp_path)
    assert [(line, text) for _, line, text in found] == [
        (3, "self.status"), (8, "err.code"), (9, "err.status"), (10, "setattr(err, 'status', 1)")]
