"""The app store's domain model: apps, versions and typed parameters.

An *app* (`App`) is what the catalog lists: a key, a title, a Markdown description, an icon and
some labels. Each *version* (`AppVersion`) is one published compose template, with the typed
`Parameter`s a user fills in to render it. One version is one OCI artifact in the registry.

Two serialised forms exist:

- the **metadata document** (`dump_metadata` / `load_metadata`): a plain JSON-able dict that
  describes one app version and is stored as a layer of the version's artifact. It holds the app
  fields and the version fields except the template text, which travels in the artifact's compose
  layers. Its `schemaVersion` field (`SCHEMA_VERSION`) is checked on load;
- a **seed folder** on disk (`load_app_folder`), the format the shipped seeds use::

      <key>/app.yaml              title, description, icon, categories, maintainers, website
      <key>/README.md             optional: the description, when app.yaml has none
      <key>/icon.png              the icon file app.yaml names (png, jpeg, gif or webp)
      <key>/<semver>/version.yaml releaseNotes, deprecated, parameters, composeFiles
      <key>/<semver>/compose.yaml the template (more files when composeFiles lists them)

Loading never trusts its input: every problem is collected into one `ModelError` whose `errors`
map field paths (``version.parameters[1].options``) to messages.

Versions are ordered by semantic versioning 2.0.0 (`SemVer`), with pre-releases before their
release and build metadata ignored for precedence.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import yamlsafe
from .errors import ModelError, YamlError

SCHEMA_VERSION = 1
"""Version of the metadata document layout; bumped on an incompatible change."""

METADATA_MEDIA_TYPE = "application/vnd.daohub.app.metadata.v1+json"
"""Suggested media type of the artifact layer that carries `dump_metadata`'s JSON."""

KEY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
"""App keys: a DNS label, so they fit repository paths, URLs and compose project names."""

PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Parameter names are Compose variable names (what `$NAME` can reference)."""

RESERVED_PARAM_PREFIXES = ("COMPOSE_", "DOCKER_")
"""Names Compose and the docker CLI read from the environment to steer themselves: a parameter of
that name, exported by an importer or a user's shell, would change how the stack is deployed."""

FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

ICON_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp"}
"""Icon file types. SVG is left out on purpose: it is a document that can carry script."""

ICON_MAX_BYTES = 256 * 1024
EXTENSIONS_MAX_CHARS = 64 * 1024
TEMPLATE_MAX_BYTES = yamlsafe.DEFAULT_LIMITS.max_bytes

_ICON_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}

SECRET_ALPHABET = string.ascii_letters + string.digits
"""Default alphabet of generated secrets: safe in URLs, shells, YAML and connection strings."""


# --------------------------------------------------------------------------- semver


_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$",
    re.ASCII,
)


@functools.total_ordering
@dataclass(frozen=True)
class SemVer:
    """A semantic version (semver.org 2.0.0).

    Ordering is semver precedence: numeric fields, then a release after its pre-releases,
    pre-release identifiers compared one by one (numbers numerically and before words). Build
    metadata does not change precedence; it only breaks ties so that sorting is deterministic.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse `MAJOR.MINOR.PATCH[-PRE][+BUILD]`; raises ValueError on anything else."""
        match = _SEMVER_RE.match(text) if isinstance(text, str) and len(text) <= 128 else None
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])")
        major, minor, patch, pre, build = match.groups()
        return cls(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (),
                   tuple(build.split(".")) if build else ())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _precedence(self) -> tuple:
        # A release sorts after all its pre-releases: (1,) > (0, ...).
        pre: tuple = (1,) if not self.prerelease else (0, *(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease))
        return (self.major, self.minor, self.patch, pre)

    def _key(self) -> tuple:
        return (*self._precedence(), self.build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def precedes(self, other: SemVer) -> bool:
        """True when `self` has lower precedence than `other` (build metadata ignored)."""
        return self._precedence() < other._precedence()

    def same_precedence(self, other: SemVer) -> bool:
        return self._precedence() == other._precedence()


def sort_versions(versions: Iterable[str], *, newest_first: bool = False) -> list[str]:
    """Sort version strings by semver precedence. Raises ValueError for a non-semver string."""
    return sorted(versions, key=SemVer.parse, reverse=newest_first)


# --------------------------------------------------------------------------- parameters


class ParamType(str, enum.Enum):
    """What a parameter holds, and so which form control and which validation it gets."""

    STRING = "string"
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"  # one of `options`; "select" is accepted as an alias on load
    PASSWORD = "password"  # a string the user types, shown masked
    MULTILINE = "multiline"  # a string with newlines (a certificate, a config snippet)
    PORT = "port"  # an int in 1..65535 (narrower with min/max)
    SECRET = "secret"  # generated when left empty: `length` characters from `alphabet`


_TYPE_ALIASES = {"select": ParamType.ENUM, "boolean": ParamType.BOOL, "integer": ParamType.INT,
                 "text": ParamType.STRING, "number": ParamType.INT}
_STRINGY = {ParamType.STRING, ParamType.PASSWORD, ParamType.MULTILINE, ParamType.SECRET}
_NUMERIC = {ParamType.INT, ParamType.PORT}


@dataclass(frozen=True)
class Option:
    """One choice of an enum parameter: the value substituted and the label shown."""

    value: str
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "label": self.label} if self.label else {"value": self.value}


@dataclass(frozen=True)
class Parameter:
    """A typed input of a version's template, referenced there as `${name}`.

    `default` has the parameter's Python type (str, int or bool). `pattern` is a regular
    expression a string value must match in full; `min`/`max` bound an int or port. A secret is
    generated from `length` characters of `alphabet` when no value is given; a secret with a
    default keeps that default instead.
    """

    name: str
    type: ParamType = ParamType.STRING
    label: str = ""
    description: str = ""
    default: str | int | bool | None = None
    required: bool = False
    pattern: str | None = None
    min: int | None = None
    max: int | None = None
    options: tuple[Option, ...] = ()
    group: str = ""
    length: int = 32
    alphabet: str = SECRET_ALPHABET

    @property
    def display_label(self) -> str:
        return self.label or self.name

    @property
    def bounds(self) -> tuple[int | None, int | None]:
        """Effective (min, max) of an int or port parameter."""
        if self.type is ParamType.PORT:
            return (1 if self.min is None else self.min, 65535 if self.max is None else self.max)
        return (self.min, self.max)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type.value}
        if self.label:
            out["label"] = self.label
        if self.description:
            out["description"] = self.description
        if self.default is not None:
            out["default"] = self.default
        if self.required:
            out["required"] = True
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.options:
            out["options"] = [o.to_dict() for o in self.options]
        if self.group:
            out["group"] = self.group
        if self.type is ParamType.SECRET:
            out["length"] = self.length
            if self.alphabet != SECRET_ALPHABET:
                out["alphabet"] = self.alphabet
        return out


@dataclass(frozen=True)
class Maintainer:
    name: str
    email: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("name", self.name), ("email", self.email), ("url", self.url)) if v}


@dataclass(frozen=True)
class AppVersion:
    """One published version of an app.

    `compose_files` maps file names to template text, in order (the first is the main file;
    `docker compose publish` artifacts may carry several). The templates are interpolated with the
    parameters' values by `appstore.render`.
    """

    version: str
    compose_files: dict[str, str] = field(default_factory=dict)
    parameters: tuple[Parameter, ...] = ()
    release_notes: str = ""
    deprecated: bool = False

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)

    @property
    def compose(self) -> str:
        """The main (first) compose template."""
        return next(iter(self.compose_files.values()), "")

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def groups(self) -> list[tuple[str, list[Parameter]]]:
        """Parameters by group, groups in order of first appearance ("" = ungrouped)."""
        grouped: dict[str, list[Parameter]] = {}
        for param in self.parameters:
            grouped.setdefault(param.group, []).append(param)
        return list(grouped.items())

    def to_dict(self, *, templates: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.release_notes:
            out["releaseNotes"] = self.release_notes
        if self.deprecated:
            out["deprecated"] = True
        out["composeFiles"] = list(self.compose_files)
        if templates:
            out["templates"] = dict(self.compose_files)
        out["parameters"] = [p.to_dict() for p in self.parameters]
        return out


@dataclass(frozen=True)
class Icon:
    """An icon file's bytes, checked against its declared type."""

    name: str
    data: bytes

    @property
    def media_type(self) -> str:
        return ICON_TYPES[os.path.splitext(self.name)[1].lower()]


@dataclass(frozen=True)
class App:
    """A catalog entry. `versions` are kept sorted, oldest first (semver precedence).

    `icon` is either the file name of an icon shipped with the app (its bytes in `icon_data`
    when loaded from disk or from an artifact) or an absolute http(s) URL (imported catalogs).

    `extensions` holds `x-*` fields (plain JSON, at most EXTENSIONS_MAX_CHARS): what an importer
    keeps of a foreign catalog's entry so that exporting it again loses nothing (`x-portainer`,
    `x-rancher`). They sit beside the app fields in the documents.
    """

    key: str
    title: str
    description: str = ""
    icon: str = ""
    categories: tuple[str, ...] = ()
    maintainers: tuple[Maintainer, ...] = ()
    website: str = ""
    versions: tuple[AppVersion, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)
    icon_data: Icon | None = field(default=None, compare=False, repr=False)

    def version(self, version: str | None = None) -> AppVersion:
        """The named version, or the latest: newest non-deprecated release, else newest of all.

        Raises KeyError when there is no such version.
        """
        if version is not None:
            for candidate in self.versions:
                if candidate.version == version:
                    return candidate
            raise KeyError(version)
        if not self.versions:
            raise KeyError("no versions")
        return self.latest()

    def latest(self) -> AppVersion:
        ordered = sorted(self.versions, key=lambda v: v.semver)
        for wanted in (lambda v: not v.deprecated and not v.semver.is_prerelease, lambda v: not v.deprecated):
            chosen = [v for v in ordered if wanted(v)]
            if chosen:
                return chosen[-1]
        return ordered[-1]

    def with_version(self, version: AppVersion) -> App:
        """A copy with `version` added (or replacing the one of the same name), kept sorted."""
        others = [v for v in self.versions if v.version != version.version]
        return replace(self, versions=tuple(sorted([*others, version], key=lambda v: v.semver)))

    def info_dict(self) -> dict[str, Any]:
        """The app's own fields (no versions), JSON-able."""
        out: dict[str, Any] = {"key": self.key, "title": self.title}
        if self.description:
            out["description"] = self.description
        if self.icon:
            out["icon"] = self.icon
        if self.categories:
            out["categories"] = list(self.categories)
        if self.maintainers:
            out["maintainers"] = [m.to_dict() for m in self.maintainers]
        if self.website:
            out["website"] = self.website
        out.update(self.extensions)
        return out

    def to_dict(self, *, templates: bool = True) -> dict[str, Any]:
        """The whole app, every version, JSON-able; `app_from_dict` reads it back."""
        return {"schemaVersion": SCHEMA_VERSION, "app": self.info_dict(),
                "versions": [v.to_dict(templates=templates) for v in self.versions]}


# --------------------------------------------------------------------------- documents


def dump_metadata(app: App, version: AppVersion) -> dict[str, Any]:
    """The metadata document of one app version (JSON-able), without template text.

    ``{"schemaVersion": 1, "app": {key, title, description?, icon?, categories?, maintainers?,
    website?}, "version": {version, releaseNotes?, deprecated?, composeFiles: [names],
    parameters: [...]}}``
    """
    return {"schemaVersion": SCHEMA_VERSION, "app": app.info_dict(),
            "version": version.to_dict(templates=False)}


def load_metadata(doc: Any, compose_files: Mapping[str, str] | None = None) -> tuple[App, AppVersion]:
    """Read a metadata document; returns the app (with just this version) and the version.

    `compose_files` gives the template text by file name (from the artifact's compose layers);
    every name the document lists must be there. Without it the version's templates are the
    document's own `templates` if any, else empty strings. Raises ModelError with every problem.
    """
    errors = _top_level(doc, "version", "metadata document")
    app = _app_info(doc.get("app"), "app", errors)
    version = _version(doc.get("version"), "version", errors, compose_files)
    if errors:
        raise ModelError(errors)
    assert app is not None and version is not None
    app = replace(app, versions=(version,))
    return app, version


def app_from_dict(doc: Any) -> App:
    """Read `App.to_dict()`'s output (all versions, with templates). Raises ModelError."""
    errors = _top_level(doc, "versions", "app document")
    app = _app_info(doc.get("app"), "app", errors)
    versions = _versions(doc.get("versions"), "versions", errors)
    if errors:
        raise ModelError(errors)
    assert app is not None
    return replace(app, versions=versions)


def _json_plain(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_json_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_plain(v, depth + 1) for k, v in value.items())
    return False


def _top_level(doc: Any, body: str, what: str) -> dict[str, str]:
    """Errors of a document's envelope: its type, schema version and top-level fields."""
    if not isinstance(doc, dict):
        raise ModelError(f"the {what} must be a JSON object")
    errors: dict[str, str] = {}
    _unknown(doc, {"schemaVersion", "app", body}, "", errors)
    schema = doc.get("schemaVersion")
    if schema is None:
        errors["schemaVersion"] = "required"
    elif type(schema) is not int or schema != SCHEMA_VERSION:
        errors["schemaVersion"] = f"unsupported schema version {schema!r} (this DaoHub reads {SCHEMA_VERSION})"
    return errors


def _versions(raw: Any, path: str, errors: dict[str, str],
              compose_files: Mapping[str, str] | None = None) -> tuple[AppVersion, ...]:
    if not isinstance(raw, list) or not raw:
        errors[path] = "must be a non-empty list of versions"
        return ()
    out: list[AppVersion] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        version = _version(item, f"{path}[{i}]", errors, compose_files)
        if version is None:
            continue
        if version.version in seen:
            errors[f"{path}[{i}].version"] = f"duplicate version {version.version}"
            continue
        seen.add(version.version)
        out.append(version)
    return tuple(sorted(out, key=lambda v: v.semver))


def _unknown(raw: dict, allowed: set[str], path: str, errors: dict[str, str]) -> None:
    for key in raw:
        if key not in allowed:
            errors[_join(path, str(key))] = "unknown field"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _str(raw: dict, name: str, path: str, errors: dict[str, str], *, required: bool = False,
         max_len: int = 200, multiline: bool = False) -> str:
    value = raw.get(name)
    where = _join(path, name)
    if value is None or value == "":
        if required:
            errors[where] = "required"
        return ""
    if not isinstance(value, str):
        errors[where] = "must be a string"
        return ""
    if len(value) > max_len:
        errors[where] = f"longer than {max_len} characters"
        return ""
    if not multiline and ("\n" in value or "\r" in value):
        errors[where] = "must be a single line"
        return ""
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        errors[where] = "contains control characters"
        return ""
    return value


def _bool(raw: dict, name: str, path: str, errors: dict[str, str]) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        errors[_join(path, name)] = "must be true or false"
        return False
    return value


def _str_list(raw: dict, name: str, path: str, errors: dict[str, str], *, max_items: int = 20) -> tuple[str, ...]:
    value = raw.get(name)
    if value is None:
        return ()
    where = _join(path, name)
    if not isinstance(value, list) or len(value) > max_items:
        errors[where] = f"must be a list of at most {max_items} strings"
        return ()
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > 64 or "\n" in item:
            errors[f"{where}[{i}]"] = "must be a non-empty single-line string of at most 64 characters"
        elif item not in out:
            out.append(item.strip())
    return tuple(out)


def is_safe_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    """An absolute URL with one of `schemes`, a host, and no whitespace or control characters."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if match is None or match.group(1).lower() not in schemes:
        return False
    if any(c.isspace() or ord(c) < 32 or c in "<>\"'`\\" for c in url):
        return False
    if match.group(1).lower() in ("http", "https"):
        return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*@?[^/?#]+", url) is not None
    return True


def check_icon_name(name: Any) -> str | None:
    """Why `name` is not acceptable as an icon file name, or None when it is.

    An icon name is a plain file name beside app.yaml: no directories, no `..`, no leading dot,
    and one of the extensions in ICON_TYPES.
    """
    if not isinstance(name, str) or not name:
        return "must be a file name"
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name or "\x00" in name:
        return "must be a plain file name (no directories or '..')"
    if not FILE_NAME_RE.match(name):
        return "may contain only letters, digits, '.', '_' and '-', and must not start with '.'"
    if os.path.splitext(name)[1].lower() not in ICON_TYPES:
        return f"must end in one of {', '.join(sorted(ICON_TYPES))}"
    return None


def check_icon_data(name: str, data: bytes) -> str | None:
    """Why `data` is not an acceptable icon called `name`, or None when it is."""
    problem = check_icon_name(name)
    if problem:
        return problem
    if len(data) > ICON_MAX_BYTES:
        return f"larger than {ICON_MAX_BYTES} bytes"
    media_type = ICON_TYPES[os.path.splitext(name)[1].lower()]
    if not data.startswith(_ICON_MAGIC[media_type]) or (media_type == "image/webp" and data[8:12] != b"WEBP"):
        return f"is not a {media_type} file"
    return None


def _app_info(raw: Any, path: str, errors: dict[str, str]) -> App | None:
    if not isinstance(raw, dict):
        errors[path] = "must be an object"
        return None
    _unknown(raw, {"key", "title", "description", "icon", "categories", "maintainers", "website"}
             | {k for k in raw if isinstance(k, str) and k.startswith("x-")}, path, errors)
    key = _str(raw, "key", path, errors, required=True, max_len=64)
    if key and not KEY_RE.match(key):
        errors[_join(path, "key")] = "must be lowercase letters, digits and '-' (a DNS label, at most 64)"
    title = _str(raw, "title", path, errors, required=True, max_len=100)
    description = _str(raw, "description", path, errors, max_len=20_000, multiline=True)
    icon = _str(raw, "icon", path, errors, max_len=2000)
    if icon and not is_safe_url(icon):
        problem = check_icon_name(icon)
        if problem:
            errors[_join(path, "icon")] = f"must be an http(s) URL or an icon file name: {problem}"
    website = _str(raw, "website", path, errors, max_len=2000)
    if website and not is_safe_url(website):
        errors[_join(path, "website")] = "must be an http or https URL"
    maintainers: list[Maintainer] = []
    raw_maintainers = raw.get("maintainers")
    if raw_maintainers is not None:
        if not isinstance(raw_maintainers, list) or len(raw_maintainers) > 20:
            errors[_join(path, "maintainers")] = "must be a list of at most 20 maintainers"
        else:
            for i, item in enumerate(raw_maintainers):
                where = f"{_join(path, 'maintainers')}[{i}]"
                if isinstance(item, str):  # "Name <mail>" shorthand, as Rancher and npm write it
                    match = re.match(r"^\s*([^<]*?)\s*(?:<([^>]*)>)?\s*$", item)
                    item = {"name": match.group(1), "email": match.group(2) or ""} if match else {}
                if not isinstance(item, dict):
                    errors[where] = "must be an object {name, email, url} or a string 'Name <email>'"
                    continue
                _unknown(item, {"name", "email", "url"}, where, errors)
                name = _str(item, "name", where, errors, required=True, max_len=100)
                email = _str(item, "email", where, errors, max_len=200)
                if email and not re.match(r"^[^@\s<>]+@[^@\s<>]+$", email):
                    errors[_join(where, "email")] = "is not an e-mail address"
                url = _str(item, "url", where, errors, max_len=2000)
                if url and not is_safe_url(url):
                    errors[_join(where, "url")] = "must be an http or https URL"
                maintainers.append(Maintainer(name, email, url))
    extensions = {k: v for k, v in raw.items() if isinstance(k, str) and k.startswith("x-")}
    if extensions and len(json.dumps(extensions, default=str)) > EXTENSIONS_MAX_CHARS:
        errors[path] = f"x-* extensions larger than {EXTENSIONS_MAX_CHARS} characters of JSON"
    for name, value in extensions.items():
        if not _json_plain(value):
            errors[_join(path, name)] = "must be plain JSON data"
    return App(key=key, title=title, description=description, icon=icon, extensions=extensions,
               categories=_str_list(raw, "categories", path, errors), maintainers=tuple(maintainers),
               website=website)


def _version(raw: Any, path: str, errors: dict[str, str],
             compose_files: Mapping[str, str] | None = None) -> AppVersion | None:
    if not isinstance(raw, dict):
        errors[path] = "must be an object"
        return None
    _unknown(raw, {"version", "releaseNotes", "deprecated", "composeFiles", "templates", "parameters"},
             path, errors)
    before = len(errors)
    version = _str(raw, "version", path, errors, required=True, max_len=128)
    if version:
        try:
            SemVer.parse(version)
        except ValueError as exc:
            errors[_join(path, "version")] = str(exc)
    notes = _str(raw, "releaseNotes", path, errors, max_len=20_000, multiline=True)
    deprecated = _bool(raw, "deprecated", path, errors)
    files = _compose_files(raw, path, errors, compose_files)
    params = _parameters(raw.get("parameters"), _join(path, "parameters"), errors)
    if len(errors) > before:
        return None
    return AppVersion(version=version, compose_files=files, parameters=params, release_notes=notes,
                      deprecated=deprecated)


def _compose_files(raw: dict, path: str, errors: dict[str, str],
                   given: Mapping[str, str] | None) -> dict[str, str]:
    templates = raw.get("templates")
    if templates is not None and not (isinstance(templates, dict)
                                      and all(isinstance(v, str) for v in templates.values())):
        errors[_join(path, "templates")] = "must map file names to template text"
        templates = None
    names = raw.get("composeFiles")
    if names is None:
        names = list(templates) if templates else (list(given) if given else ["compose.yaml"])
    where = _join(path, "composeFiles")
    if not isinstance(names, list) or not names or len(names) > 10:
        errors[where] = "must be a list of 1 to 10 file names"
        return {}
    out: dict[str, str] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not FILE_NAME_RE.match(name) or ".." in name \
                or not name.endswith((".yaml", ".yml")):
            errors[f"{where}[{i}]"] = "must be a plain file name ending in .yaml or .yml"
            continue
        if name in out:
            errors[f"{where}[{i}]"] = f"duplicate file {name}"
            continue
        source = given if given is not None else templates
        text = source.get(name) if source is not None else ""
        if text is None:
            errors[f"{where}[{i}]"] = f"no template named {name}"
            continue
        if len(text.encode("utf-8", "surrogatepass")) > TEMPLATE_MAX_BYTES:
            errors[f"{where}[{i}]"] = f"template larger than {TEMPLATE_MAX_BYTES} bytes"
            continue
        out[name] = text
    return out


def _parameters(raw: Any, path: str, errors: dict[str, str]) -> tuple[Parameter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 200:
        errors[path] = "must be a list of at most 200 parameters"
        return ()
    out: list[Parameter] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        param = parameter_from_dict(item, where, errors)
        if param is None:
            continue
        folded = param.name.upper()
        if folded in seen:
            errors[_join(where, "name")] = (f"{param.name!r} collides with parameter {seen[folded]!r} "
                                            f"(names must differ in more than case)")
            continue
        seen[folded] = param.name
        out.append(param)
    return tuple(out)


_PARAM_FIELDS = {"name", "type", "label", "description", "default", "required", "pattern", "min", "max",
                 "options", "group", "length", "alphabet"}


def parameter_from_dict(raw: Any, path: str, errors: dict[str, str]) -> Parameter | None:
    """Read one parameter object, adding any problems to `errors` under `path`."""
    if not isinstance(raw, dict):
        errors[path] = "must be an object"
        return None
    before = len(errors)
    _unknown(raw, _PARAM_FIELDS, path, errors)
    name = _str(raw, "name", path, errors, required=True, max_len=64)
    if name and not PARAM_NAME_RE.match(name):
        errors[_join(path, "name")] = "must be a variable name: a letter or '_', then letters, digits or '_'"
    elif name and name.upper().startswith(RESERVED_PARAM_PREFIXES):
        errors[_join(path, "name")] = (f"{name!r} is reserved: COMPOSE_* and DOCKER_* variables steer "
                                       f"docker compose itself")
    type_raw = raw.get("type", "string")
    ptype: ParamType | None = None
    if isinstance(type_raw, str):
        ptype = _TYPE_ALIASES.get(type_raw.lower())
        if ptype is None:
            try:
                ptype = ParamType(type_raw.lower())
            except ValueError:
                pass
    if ptype is None:
        errors[_join(path, "type")] = f"must be one of {', '.join(t.value for t in ParamType)}"
        return None
    label = _str(raw, "label", path, errors, max_len=100)
    description = _str(raw, "description", path, errors, max_len=2000, multiline=True)
    group = _str(raw, "group", path, errors, max_len=64)
    required = _bool(raw, "required", path, errors)

    pattern = raw.get("pattern")
    if pattern is not None:
        if ptype not in _STRINGY - {ParamType.SECRET} or not isinstance(pattern, str) or len(pattern) > 500:
            errors[_join(path, "pattern")] = "is a regular expression (at most 500 characters) for string types"
            pattern = None
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors[_join(path, "pattern")] = f"is not a valid regular expression: {exc}"
                pattern = None

    bounds: dict[str, int | None] = {}
    for bound in ("min", "max"):
        value = raw.get(bound)
        if value is not None and (ptype not in _NUMERIC or type(value) is not int):
            errors[_join(path, bound)] = "is an integer bound, for int and port parameters only"
            value = None
        if value is not None and ptype is ParamType.PORT and not 1 <= value <= 65535:
            errors[_join(path, bound)] = "a port bound must be in 1..65535"
        bounds[bound] = value
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        errors[_join(path, "max")] = "must not be less than min"

    options: list[Option] = []
    raw_options = raw.get("options")
    if ptype is ParamType.ENUM:
        if not isinstance(raw_options, list) or not raw_options or len(raw_options) > 100:
            errors[_join(path, "options")] = "an enum needs a list of 1 to 100 options"
        else:
            for j, opt in enumerate(raw_options):
                where = f"{_join(path, 'options')}[{j}]"
                if isinstance(opt, (str, int, float)) and not isinstance(opt, bool):
                    opt = {"value": str(opt)}
                if not isinstance(opt, dict):
                    errors[where] = "must be a value or an object {value, label}"
                    continue
                _unknown(opt, {"value", "label"}, where, errors)
                value = opt.get("value")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = str(value)
                if not isinstance(value, str) or len(value) > 200 or "\n" in value:
                    errors[_join(where, "value")] = "must be a single-line string"
                    continue
                if any(o.value == value for o in options):
                    errors[_join(where, "value")] = f"duplicate option {value!r}"
                    continue
                options.append(Option(value, _str(opt, "label", where, errors, max_len=100)))
    elif raw_options is not None:
        errors[_join(path, "options")] = "only enum parameters have options"

    length, alphabet = 32, SECRET_ALPHABET
    if ptype is ParamType.SECRET:
        length = raw.get("length", 32)
        if type(length) is not int or not 8 <= length <= 256:
            errors[_join(path, "length")] = "a secret's length is an integer in 8..256"
            length = 32
        alphabet = raw.get("alphabet", SECRET_ALPHABET)
        if not isinstance(alphabet, str) or len(set(alphabet)) < 10 or len(alphabet) > 256 \
                or any(c.isspace() or not c.isprintable() for c in alphabet):
            errors[_join(path, "alphabet")] = "must be at least 10 distinct printable, non-space characters"
            alphabet = SECRET_ALPHABET
        else:
            alphabet = "".join(dict.fromkeys(alphabet))  # duplicates would bias the draw
    else:
        for extra in ("length", "alphabet"):
            if extra in raw:
                errors[_join(path, extra)] = "only secret parameters have one"

    param = Parameter(name=name, type=ptype, label=label, description=description, required=required,
                      pattern=pattern, min=bounds["min"], max=bounds["max"], options=tuple(options),
                      group=group, length=length, alphabet=alphabet)
    if "default" in raw and raw["default"] is not None:
        default, problem = coerce_value(param, raw["default"])
        if problem:
            errors[_join(path, "default")] = problem
        else:
            param = replace(param, default=default)
    if len(errors) > before:
        return None
    return param


def coerce_value(param: Parameter, value: Any) -> tuple[str | int | bool | None, str | None]:
    """Convert and check one value for `param`: returns (value, None) or (None, problem).

    Accepts the parameter's own type or its text form (as form fields and `--set` send it):
    "8080" for an int, "true"/"false"/"yes"/"no"/"1"/"0"/"on"/"off" for a bool.
    """
    ptype = param.type
    if ptype in _NUMERIC:
        if isinstance(value, bool):
            return None, "must be an integer"
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,18}\s*", value):
            value = int(value)
        if type(value) is not int:
            return None, "must be an integer" if ptype is ParamType.INT else "must be a port number"
        low, high = param.bounds
        if low is not None and value < low:
            return None, f"must be at least {low}"
        if high is not None and value > high:
            return None, f"must be at most {high}"
        return value, None
    if ptype is ParamType.BOOL:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True, None
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False, None
        return None, "must be true or false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None, "must be a string"
    if len(value) > 65536:
        return None, "is longer than 65536 characters"
    if "\x00" in value:
        return None, "contains a NUL character"
    if ptype is ParamType.ENUM:
        if not any(o.value == value for o in param.options):
            return None, f"must be one of {', '.join(o.value for o in param.options)}"
        return value, None
    if ptype is not ParamType.MULTILINE and ("\n" in value or "\r" in value):
        return None, "must be a single line"
    if ptype is ParamType.SECRET and value and any(c.isspace() for c in value):
        return None, "must not contain spaces"
    if param.pattern is not None and value and re.fullmatch(param.pattern, value) is None:
        return None, describe_pattern(param.pattern)
    return value, None


_CLASS_ONLY = re.compile(r"\[(\^?)((?:[^\]\\]|\\.)+)\]([*+?]|\{(\d+)(?:,(\d*))?\})?")
_RANGES = {"a-z": "lowercase letters", "A-Z": "uppercase letters", "0-9": "digits"}


def describe_pattern(pattern: str) -> str:
    """Why a value does not fit a parameter's `pattern`, in words a person reads (never the
    regular expression itself): a single character class with a count (`[a-z0-9-]+`,
    `[0-9]{4,6}`) is spelled out; anything else is "not in the form this app expects"."""
    found = _CLASS_ONLY.fullmatch(pattern)
    if not found or found.group(1):
        return "is not in the form this app expects (see the field's description)"
    body, kinds = found.group(2), []
    for span, words in _RANGES.items():
        if span in body:
            kinds.append(words)
            body = body.replace(span, "")
    body = re.sub(r"\\(.)", r"\1", body)
    kinds += ["spaces" if c == " " else f"'{c}'" for c in dict.fromkeys(body)]
    what = ", ".join(kinds[:-1]) + (" and " if len(kinds) > 1 else "") + kinds[-1] if kinds else "other characters"
    quantifier, low, high = found.group(3), found.group(4), found.group(5)
    count = ""
    if quantifier is None or quantifier == "?":
        count = "one character" if quantifier is None else "at most one character"
    elif low is not None:
        if high is None:
            count = f"exactly {low} characters"
        elif high == "":
            count = f"at least {low} characters"
        else:
            count = f"{low} to {high} characters"
    if count:
        return f"must be {count}, using only {what}"
    return f"may contain only {what}"


# --------------------------------------------------------------------------- folders


def _read_text(path: Path, where: str, errors: dict[str, str], max_bytes: int) -> str | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        errors[where] = f"cannot read: {exc.strerror or exc}"
        return None
    if len(data) > max_bytes:
        errors[where] = f"larger than {max_bytes} bytes"
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        errors[where] = "is not UTF-8 text"
        return None


def _yaml_file(path: Path, where: str, errors: dict[str, str]) -> Any:
    text = _read_text(path, where, errors, yamlsafe.DEFAULT_LIMITS.max_bytes)
    if text is None:
        return None
    try:
        return yamlsafe.load(text)
    except YamlError as exc:
        errors[where] = exc.summary()
        return None


def _inside(folder: Path, name: str) -> Path | None:
    """`folder/name` if it is a regular file really inside `folder` (symlinks out are refused)."""
    candidate = folder / name
    try:
        resolved = candidate.resolve(strict=True)
        root = folder.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if resolved.parent != root or not resolved.is_file():
        return None
    return resolved


def load_app_folder(folder: str | os.PathLike[str]) -> App:
    """Load an app from a seed folder (layout in the module docstring). Raises ModelError.

    The folder's name is the app key unless app.yaml sets `key`. Every subfolder whose name
    is a semantic version is a version; other subfolders are ignored.
    """
    root = Path(folder)
    errors: dict[str, str] = {}
    if not root.is_dir():
        raise ModelError(f"{root} is not a folder")
    info = _yaml_file(root / "app.yaml", "app.yaml", errors)
    if errors:
        raise ModelError(errors)
    if not isinstance(info, dict):
        raise ModelError({"app.yaml": "must be a mapping of app fields"})
    info = dict(info)
    info.setdefault("key", root.name)
    if not info.get("description"):
        readme = _inside(root, "README.md")
        if readme is not None:
            info["description"] = _read_text(readme, "README.md", errors, 20_000) or ""
    app = _app_info(info, "app.yaml", errors)
    icon: Icon | None = None
    if app is not None and app.icon and not is_safe_url(app.icon) and "app.yaml.icon" not in errors:
        icon_path = _inside(root, app.icon)
        if icon_path is None:
            errors["app.yaml.icon"] = f"no file {app.icon!r} in the app folder"
        else:
            data = icon_path.read_bytes()[:ICON_MAX_BYTES + 1]
            problem = check_icon_data(app.icon, data)
            if problem:
                errors["app.yaml.icon"] = f"{app.icon} {problem}"
            else:
                icon = Icon(app.icon, data)
    versions: list[AppVersion] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            SemVer.parse(sub.name)
        except ValueError:
            continue
        where = sub.name
        raw = _yaml_file(sub / "version.yaml", f"{where}/version.yaml", errors) \
            if (sub / "version.yaml").exists() else {}
        if raw is None:
            continue
        if not isinstance(raw, dict):
            errors[f"{where}/version.yaml"] = "must be a mapping of version fields"
            continue
        raw = dict(raw)
        if raw.setdefault("version", sub.name) != sub.name:
            errors[f"{where}/version.yaml.version"] = f"must match the folder name {sub.name}"
            continue
        names = raw.get("composeFiles") or ["compose.yaml"]
        texts: dict[str, str] = {}
        if isinstance(names, list):
            for name in names:
                if not isinstance(name, str):
                    continue
                path = _inside(sub, name)
                if path is None:
                    errors[f"{where}/{name}"] = "missing, or not a file inside the version folder"
                    continue
                text = _read_text(path, f"{where}/{name}", errors, TEMPLATE_MAX_BYTES)
                if text is not None:
                    texts[name] = text
            raw["composeFiles"] = names
        version = _version(raw, f"{where}/version.yaml", errors, texts)
        if version is not None:
            versions.append(version)
    if not versions and not errors:
        errors["versions"] = "no version folders (named by semantic version, e.g. 1.0.0/)"
    if errors:
        raise ModelError(errors)
    assert app is not None
    return replace(app, versions=tuple(sorted(versions, key=lambda v: v.semver)), icon_data=icon)


def load_app_file(path: str | os.PathLike[str]) -> App:
    """Load an app from one JSON or YAML file. Raises ModelError.

    The file is either a whole app (`App.to_dict()`: ``versions`` with ``templates``) or one
    metadata document (`dump_metadata`), whose compose files are read from beside it by the
    names in ``composeFiles``.
    """
    file = Path(path)
    errors: dict[str, str] = {}
    doc = _yaml_file(file, file.name, errors)  # JSON is YAML, so one bounded loader reads both
    if errors:
        raise ModelError(errors)
    if isinstance(doc, dict) and "versions" in doc:
        return app_from_dict(doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), dict):
        raise ModelError({file.name: "neither an app document (versions) nor a metadata document (version)"})
    names = doc["version"].get("composeFiles") or ["compose.yaml"]
    texts: dict[str, str] = {}
    if isinstance(names, list) and "templates" not in doc["version"]:
        for name in names:
            found = _inside(file.parent, name) if isinstance(name, str) else None
            if found is None:
                errors[str(name)] = "compose file missing beside the metadata file"
                continue
            text = _read_text(found, str(name), errors, TEMPLATE_MAX_BYTES)
            if text is not None:
                texts[name] = text
        if errors:
            raise ModelError(errors)
    app, _ = load_metadata(doc, texts or None)
    return app


def load_app(path: str | os.PathLike[str]) -> App:
    """An app from a seed folder (`load_app_folder`) or a single file (`load_app_file`)."""
    return load_app_folder(path) if Path(path).is_dir() else load_app_file(path)
