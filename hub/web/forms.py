"""The parameters form of an app version: form controls from the typed parameters (as
appstore.service returns them), submitted form data back to parameter values, and the service's
field errors back to fields. Validation itself is the service's (appstore.render)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
