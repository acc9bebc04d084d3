"""The parameters form of an app version: form controls from the typed parameters (as
appstore.service returns them), submitted form data back to parameter values, and the service's
field errors back to fields. Validation itself is the service's (appstore.render)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

PREFIX = "v_"  # form field names: never clash with csrf, version or action
_VALUES_POINTER = "#/values/"


@dataclass
class Field:
    name: str
    type: str
    label: str
    description: str
    control: str  # text | password | number | textarea | checkbox | select
    value: str
    required: bool
    attrs: dict[str, str]
    options: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""
    placeholder: str = ""

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def id(self) -> str:
        return "param-" + self.name

    @property
    def checked(self) -> bool:
        return self.value == "true"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(param: Mapping[str, Any], submitted: Mapping[str, str] | None) -> Field:
    ptype = param["type"]
    default = param.get("default")
    value = _text(default) if submitted is None else submitted.get(param["name"], "")
    attrs: dict[str, str] = {}
    control = {"password": "password", "secret": "password", "multiline": "textarea", "bool": "checkbox",
               "enum": "select", "int": "number", "port": "number"}.get(ptype, "text")
    if ptype in ("int", "port"):
        low, high = param.get("min"), param.get("max")
        if ptype == "port":
            low, high = (1 if low is None else low), (65535 if high is None else high)
        attrs["step"] = "1"
        if low is not None:
            attrs["min"] = str(low)
        if high is not None:
            attrs["max"] = str(high)
        attrs["inputmode"] = "numeric"
    if ptype in ("string", "password") and param.get("pattern"):
        attrs["pattern"] = param["pattern"]
    if ptype in ("password", "secret"):
        attrs["autocomplete"] = "new-password"
    # A value left empty takes the default (or a generated secret), so only a required
    # parameter without a default must be filled in.
    required = bool(param.get("required")) and default is None and ptype not in ("secret", "bool")
    options = [(o["value"], o.get("label") or o["value"]) for o in param.get("options", [])]
    placeholder = ""
    if ptype == "secret":
        placeholder = f"left empty: {param.get('length', 32)} random characters"
    return Field(param["name"], ptype, param.get("label") or param["name"], param.get("description", ""),
                 control, value, required, attrs, options, placeholder=placeholder)


def groups(parameters: list[Mapping[str, Any]], submitted: Mapping[str, str] | None = None,
           errors: Mapping[str, str] | None = None) -> list[tuple[str, list[Field]]]:
    """The form's fieldsets in the parameters' order: (group name, fields)."""
    out: dict[str, list[Field]] = {}
    for param in parameters:
        f = _field(param, submitted)
        f.error = (errors or {}).get(f.name, "")
        out.setdefault(param.get("group") or "Settings", []).append(f)
    return list(out.items())


def submitted_values(parameters: list[Mapping[str, Any]], form: Mapping[str, str]) -> dict[str, str]:
    """Parameter name -> submitted text. An unchecked checkbox sends nothing: that is false."""
    values = {}
    for param in parameters:
        raw = form.get(PREFIX + param["name"])
        if param["type"] == "bool":
            values[param["name"]] = "true" if raw in ("true", "on") else "false"
        elif raw is not None:
            values[param["name"]] = raw
    return values


def split_errors(problem_errors: list[dict[str, str]] | None) -> tuple[dict[str, str], list[str]]:
    """A ValidationFailed's errors as (parameter -> message, messages about nothing in particular)."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for item in problem_errors or []:
        pointer = item.get("pointer", "")
        if pointer.startswith(_VALUES_POINTER) and "/" not in pointer[len(_VALUES_POINTER):]:
            fields[pointer[len(_VALUES_POINTER):]] = item.get("detail", "invalid")
        else:
            general.append(item.get("detail", "invalid"))
    return fields, general


# The publishing form ---------------------------------------------------------------------------
# Its fields build the metadata document (appstore.model.load_metadata checks it); the document
# as JSON stays available as an advanced option. Parameters are rows p<i>_<field>.
PARAM_TYPES = ("string", "int", "bool", "enum", "password", "multiline", "port", "secret")
PARAM_FIELDS = ("name", "type", "label", "default", "required", "options", "description")
EXTRA_ROWS = 3
MAX_ROWS = 100


@dataclass
class ParamRow:
    index: int
    name: str = ""
    type: str = "string"
    label: str = ""
    default: str = ""
    required: bool = False
    options: str = ""  # comma-separated values of an enum
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # what the form has no field for (pattern, min...)


@dataclass
class PublishFields:
    key: str = ""
    title: str = ""
    description: str = ""
    categories: str = ""
    website: str = ""
    version: str = ""
    release_notes: str = ""
    rows: list[ParamRow] = field(default_factory=list)

    def padded(self, extra: int = EXTRA_ROWS) -> PublishFields:
        """The same fields with `extra` empty parameter rows at the end (the form's blank lines)."""
        rows = [r for r in self.rows if r.name or r.label or r.default or r.description]
        rows = [replace(r, index=i) for i, r in enumerate(rows)]
        rows += [ParamRow(len(rows) + i) for i in range(extra)]
        return replace(self, rows=rows[:MAX_ROWS])


def fields_from_metadata(doc: Mapping[str, Any]) -> PublishFields:
    """The form's fields from a metadata document (the latest version's, to start the next)."""
    app = doc.get("app") or {}
    version = doc.get("version") or {}
    rows = []
    for i, param in enumerate(version.get("parameters") or []):
        options = param.get("options") or []
        rows.append(ParamRow(
            i, str(param.get("name", "")), str(param.get("type", "string")), str(param.get("label", "")),
            _text(param.get("default")), bool(param.get("required")),
            ", ".join(str(o["value"]) if isinstance(o, Mapping) else str(o) for o in options),
            str(param.get("description", "")),
            {k: v for k, v in param.items() if k not in PARAM_FIELDS}))
    return PublishFields(str(app.get("key", "")), str(app.get("title", "")), str(app.get("description", "")),
                         ", ".join(app.get("categories") or []), str(app.get("website", "")), "",
                         str(version.get("releaseNotes", "")), rows)


def fields_from_form(form: Mapping[str, Any]) -> PublishFields:
    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    rows = []
    try:
        count = min(MAX_ROWS, max(0, int(text("rows") or 0)))
    except ValueError:
        count = 0
    for i in range(count):
        extra_text = text(f"p{i}_extra")
        try:
            extra = json.loads(extra_text) if extra_text else {}
        except ValueError:
            extra = {}
        rows.append(ParamRow(i, text(f"p{i}_name"), text(f"p{i}_type") or "string", text(f"p{i}_label"),
                             text(f"p{i}_default"), form.get(f"p{i}_required") in ("true", "on"),
                             text(f"p{i}_options"), text(f"p{i}_description"),
                             extra if isinstance(extra, dict) else {}))
    return PublishFields(text("key"), text("title"), text("description"), text("categories"), text("website"),
                         text("version"), text("release_notes"), rows)


def _typed_default(ptype: str, value: str) -> Any:
    if value == "":
        return None
    if ptype in ("int", "port") and value.lstrip("-").isdigit():
        return int(value)
    if ptype == "bool" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value  # the model says in words what is wrong with it


def metadata_from_fields(fields: PublishFields, compose_name: str, icon_name: str | None) -> dict[str, Any]:
    """The metadata document (schemaVersion 1) the form's fields describe."""
    app: dict[str, Any] = {"key": fields.key, "title": fields.title}
    if fields.description:
        app["description"] = fields.description
    categories = [c.strip() for c in fields.categories.split(",") if c.strip()]
    if categories:
        app["categories"] = categories
    if fields.website:
        app["website"] = fields.website
    if icon_name:
        app["icon"] = icon_name
    parameters = []
    for row in fields.rows:
        if not row.name:
            continue
        param: dict[str, Any] = {**row.extra, "name": row.name, "type": row.type}
        for key, value in (("label", row.label), ("description", row.description)):
            if value:
                param[key] = value
        default = _typed_default(row.type, row.default)
        if default is not None:
            param["default"] = default
        if row.required:
            param["required"] = True
        if row.type == "enum":
            param["options"] = [o.strip() for o in row.options.split(",") if o.strip()]
        parameters.append(param)
    version: dict[str, Any] = {"version": fields.version, "composeFiles": [compose_name], "parameters": parameters}
    if fields.release_notes:
        version["releaseNotes"] = fields.release_notes
    return {"schemaVersion": 1, "app": app, "version": version}


def rows_for_variables(fields: PublishFields, names: list[str]) -> PublishFields:
    """`fields` with a string parameter row for each compose variable not declared yet."""
    declared = {r.name for r in fields.rows if r.name}
    rows = [r for r in fields.rows if r.name] + [ParamRow(0, name, "string", name.replace("_", " ").capitalize())
                                                  for name in names if name not in declared]
    return replace(fields, rows=rows)


_FIELD_NAMES = {"app/key": "App key", "app/title": "Title", "app/description": "Description",
                "app/categories": "Categories", "app/website": "Website", "app/icon": "Icon",
                "version/version": "Version", "version/releaseNotes": "Release notes",
                "version/composeFiles": "Compose file names", "version/parameters": "Parameters"}
_PARAM_FIELD_NAMES = {"name": "name", "type": "type", "label": "label", "default": "default",
                      "required": "required", "options": "choices", "description": "description",
                      "pattern": "pattern", "min": "minimum", "max": "maximum", "length": "length"}


def field_label(pointer: str, parameters: list[Mapping[str, Any]] | None = None) -> str:
    """A problem's JSON pointer (`#/metadata/version/parameters/1/default`) in words
    ("Parameter 2 (PORT), default"), for messages a person reads."""
    path = pointer.removeprefix("#/").removeprefix("metadata/")
    parts = path.split("/")
    if len(parts) >= 3 and parts[:2] == ["version", "parameters"] and parts[2].isdigit():
        n = int(parts[2])
        name = ""
        if parameters and n < len(parameters) and isinstance(parameters[n], Mapping):
            name = str(parameters[n].get("name") or "")
        label = f"Parameter {n + 1}" + (f" ({name})" if name else "")
        if len(parts) > 3:
            label += ", " + _PARAM_FIELD_NAMES.get(parts[3], parts[3]) + "".join(f" {p}" for p in parts[4:])
        return label
    if path.startswith("compose_files"):
        return "Compose file"
    for prefix, words in _FIELD_NAMES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return words
    return {"repository": "Repository", "icon": "Icon", "compose": "Compose file", "metadata": "Metadata",
            "schemaVersion": "Metadata schemaVersion"}.get(path, path.replace("/", " "))
