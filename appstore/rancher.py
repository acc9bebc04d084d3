"""Import Rancher v1 catalog templates into apps.

A Rancher v1 catalog keeps one folder per app (`templates/<app>/`)::

    config.yml              name, description, version, category, maintainer, license, projectURL
    catalogIcon-<x>.png     the icon (png, jpeg, gif or webp are taken; svg is skipped)
    0/ 1/ 2/ ...            one folder per version:
        docker-compose.yml      the compose file (v1 layout or v2 with `services:`)
        rancher-compose.yml     `.catalog`: name, version, description, questions

`.catalog.questions` are `{variable, label, description, default, required, type, options, min,
max}` with type string, int, boolean, password, enum, multiline, service or certificate. They
become parameters: `service` (a service picker) and `certificate` (a certificate picker) have no
DaoHub counterpart and become plain strings. Variables the compose file references but no
question asks for become optional string parameters, because Rancher interpolates them too
(empty when unanswered).

Rancher versions are free text (`5.7-rancher1`, `v0.59.2`); they are read as semantic versions
where possible (missing parts are 0, a suffix becomes the pre-release) and otherwise numbered
`0.0.<folder>`. The original version and folder of each are kept in the app's `x-rancher`
extension. Compose files in the v1 layout (services at the top level) are moved under
`services:`. Go-templated `docker-compose.yml.tpl` files cannot be imported: they are refused
with a message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import interpolate, yamlsafe
from .errors import AppStoreError, ModelError
from .model import (
    ICON_MAX_BYTES,
    TEMPLATE_MAX_BYTES,
    App,
    AppVersion,
    Icon,
    Maintainer,
    Parameter,
    SemVer,
    _app_info,
    _inside,
    _read_text,
    _yaml_file,
    check_icon_data,
    parameter_from_dict,
)

EXTENSION = "x-rancher"
_TYPES = {"string": "string", "int": "int", "boolean": "bool", "password": "password", "enum": "enum",
          "multiline": "multiline", "service": "string", "certificate": "string"}
_ICON_RE = re.compile(r"^catalogIcon-[A-Za-z0-9._-]+$")


def coerce_version(text: Any, folder: str) -> str:
    """A semantic version for a Rancher version string; `0.0.<folder>` when there is no sense in it."""
    match = re.match(r"^v?(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(.*)$", str(text or "").strip(), re.ASCII)
    if match:
        major, minor, patch, rest = match.groups()
        core = f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}"
        suffix = re.sub(r"[^0-9A-Za-z.-]+", "-", rest.lstrip("-+.")).strip(".-")
        suffix = ".".join(part for part in suffix.split(".") if part)
        for candidate in (f"{core}-{suffix}" if suffix else core, core):
            try:
                SemVer.parse(candidate)
                return candidate
            except ValueError:
                continue
    return f"0.0.{int(folder) if folder.isdigit() else 0}"


def _question(raw: Any, where: str, errors: dict[str, str]) -> Parameter | None:
    if not isinstance(raw, dict):
        errors[where] = "must be a mapping"
        return None
    qtype = str(raw.get("type", "string")).lower()
    if qtype not in _TYPES:
        errors[f"{where}.type"] = f"unknown question type {qtype!r}"
        return None
    doc: dict[str, Any] = {"name": raw.get("variable"), "type": _TYPES[qtype],
                           "label": str(raw.get("label") or ""), "required": bool(raw.get("required", False))}
    description = str(raw.get("description") or "")
    if qtype in ("service", "certificate"):
        description = (description + " " if description else "") + f"(Rancher asked for a {qtype} here.)"
    doc["description"] = description
    if qtype == "enum":
        doc["options"] = [str(o) for o in raw.get("options") or []]
    for bound in ("min", "max"):
        if qtype == "int" and type(raw.get(bound)) is int:
            doc[bound] = raw[bound]
    default = raw.get("default")
    if default is not None and default != "":
        doc["default"] = default
    return parameter_from_dict(doc, where, errors)


def _compose_text(doc: Any) -> str:
    """The compose file in the layout DaoHub renders: v1 files get their services moved under `services:`."""
    if isinstance(doc, dict) and "services" not in doc and "version" not in doc:
        doc = {"services": doc}
    return yamlsafe.dump(doc)


def _version(folder: Path, errors: dict[str, str]) -> tuple[AppVersion, dict[str, str]] | None:
    where = folder.name
    if (folder / "docker-compose.yml.tpl").exists() and not (folder / "docker-compose.yml").exists():
        errors[f"{where}/docker-compose.yml.tpl"] = "Go-templated compose files cannot be imported"
        return None
    compose_path = _inside(folder, "docker-compose.yml") or _inside(folder, "docker-compose.yaml")
    if compose_path is None:
        errors[f"{where}/docker-compose.yml"] = "missing"
        return None
    text = _read_text(compose_path, f"{where}/docker-compose.yml", errors, TEMPLATE_MAX_BYTES)
    if text is None:
        return None
    try:
        compose = yamlsafe.load(text)
    except AppStoreError as exc:
        errors[f"{where}/docker-compose.yml"] = exc.summary()
        return None
    catalog: dict = {}
    rancher_path = _inside(folder, "rancher-compose.yml") or _inside(folder, "rancher-compose.yaml")
    if rancher_path is not None:
        rancher = _yaml_file(rancher_path, f"{where}/rancher-compose.yml", errors)
        if isinstance(rancher, dict) and isinstance(rancher.get(".catalog"), dict):
            catalog = rancher[".catalog"]
    params: list[Parameter] = []
    questions = catalog.get("questions") or []
    if not isinstance(questions, list):
        errors[f"{where}/rancher-compose.yml.catalog.questions"] = "must be a list"
        questions = []
    for i, raw in enumerate(questions):
        param = _question(raw, f"{where}/rancher-compose.yml.catalog.questions[{i}]", errors)
        if param is not None and all(p.name != param.name for p in params):
            params.append(param)
    try:
        used = interpolate.variables(compose)
    except AppStoreError as exc:
        errors.update({f"{where}/docker-compose.yml:{k}": v for k, v in exc.errors.items()})
        return None
    declared = {p.name for p in params}
    for name in used:
        if name not in declared:
            param = parameter_from_dict({"name": name, "description": "Referenced by the compose file; "
                                         "the Rancher template did not ask for it."}, f"{where}:${name}", errors)
            if param is not None:
                params.append(param)
    version = coerce_version(catalog.get("version"), folder.name)
    notes = str(catalog.get("description") or "")
    return (AppVersion(version, {"compose.yaml": _compose_text(compose)}, tuple(params), release_notes=notes),
            {"folder": folder.name, "version": str(catalog.get("version") or "")})


def import_rancher_folder(folder: str | Path, key: str | None = None) -> App:
    """One Rancher v1 template folder as an App. Raises ModelError with every problem."""
    root = Path(folder)
    errors: dict[str, str] = {}
    if not root.is_dir():
        raise ModelError(f"{root} is not a folder")
    config = _yaml_file(root / "config.yml", "config.yml", errors) if (root / "config.yml").exists() else None
    if errors:
        raise ModelError(errors)
    if not isinstance(config, dict):
        raise ModelError({"config.yml": "missing, or not a mapping"})
    maintainer = config.get("maintainer")
    info: dict[str, Any] = {
        "key": key or re.sub(r"[^a-z0-9-]+", "-", root.name.lower()).strip("-")[:63] or "app",
        "title": str(config.get("name") or root.name),
        "description": str(config.get("description") or ""),
        "categories": [str(config["category"])] if config.get("category") else [],
        "website": str(config.get("projectURL") or ""),
    }
    app = _app_info(info, "config.yml", errors)
    icon: Icon | None = None
    for candidate in sorted(root.iterdir()):
        if _ICON_RE.match(candidate.name) and _inside(root, candidate.name) is not None:
            data = candidate.read_bytes()[:ICON_MAX_BYTES + 1]
            if check_icon_data(candidate.name, data) is None:
                icon = Icon(candidate.name, data)
                break
    versions: list[AppVersion] = []
    originals: dict[str, dict[str, str]] = {}
    for sub in sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink()),
                      key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)):
        if not sub.name.isdigit():
            continue
        found = _version(sub, errors)
        if found is None:
            continue
        version, original = found
        if version.version in originals:  # two folders claim one version: keep both, apart
            version = AppVersion(f"{version.version}+rancher.{sub.name}", version.compose_files, version.parameters,
                                 version.release_notes)
        originals[version.version] = original
        versions.append(version)
    if not versions and not errors:
        errors["versions"] = "no version folders (0/, 1/, ...) with a docker-compose.yml"
    if errors:
        raise ModelError(errors)
    assert app is not None
    extension: dict[str, Any] = {"versions": originals}
    if config.get("license"):
        extension["license"] = str(config["license"])
    if config.get("version"):
        extension["default_version"] = str(config["version"])
    maintainers = (Maintainer(str(maintainer)),) if maintainer else ()
    if maintainers:
        match = re.match(r"^\s*([^<]*?)\s*<([^>]+@[^>]+)>\s*$", str(maintainer))
        if match:
            maintainers = (Maintainer(match.group(1) or match.group(2), match.group(2)),)
    return App(key=app.key, title=app.title, description=app.description, icon=icon.name if icon else "",
               categories=app.categories, maintainers=maintainers, website=app.website,
               versions=tuple(sorted(versions, key=lambda v: v.semver)), extensions={EXTENSION: extension},
               icon_data=icon)


def import_rancher_catalog(templates: str | Path) -> list[App]:
    """Every app folder under a catalog's `templates/` folder. Raises ModelError whose fields are
    prefixed with the app folder's name."""
    root = Path(templates)
    if not root.is_dir():
        raise ModelError(f"{root} is not a folder")
    apps: list[App] = []
    errors: dict[str, str] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            apps.append(import_rancher_folder(sub))
        except ModelError as exc:
            errors.update({f"{sub.name}/{k}" if k else sub.name: v for k, v in exc.errors.items()})
    if errors:
        raise ModelError(errors)
    return apps
