"""Every non-Python file the packages read at run time is named by pyproject.toml's package-data,
so a non-editable install (a wheel, a container image) carries it: templates, static files,
migrations and seed apps. A file added in a new folder without a pattern fails here."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folders whose files are data the code opens by path (not Python modules).
DATA_DIRS = {"hub": ["web/templates", "web/static", "db/migrations"], "appstore": ["seeds"]}


def test_every_data_file_is_in_the_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, folders in DATA_DIRS.items():
        base = ROOT / package
        covered = {p for pattern in patterns[package] for p in base.glob(pattern) if p.is_file()}
        files = {p for folder in folders for p in (base / folder).rglob("*")
                 if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts}
        assert files, package
        assert sorted(str(p.relative_to(base)) for p in files - covered) == [], package
