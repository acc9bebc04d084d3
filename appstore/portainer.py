"""Portainer app templates (JSON v2 and v3): export DaoHub apps as a feed, import feeds as apps.

A feed is ``{"version": "2" | "3", "templates": [...]}``. Each template has a `type` (1 container,
2 swarm stack, 3 compose stack), `title`, `description`, `categories`, `platform`, `logo`,
`note`, `name`, `administrator_only`; stacks have `repository {url, stackfile}` (Portainer
clones a git repository for them), containers have `image`, `ports`, `volumes`, `labels`,
`restart_policy` and more; all may have `env` (`name`, `label`, `description`, `default`,
`preset`, `select [{text, value, default}]`). v3 adds a numeric `id` per template.

Export (`export_feed`) writes one template per app, from its latest version. DaoHub apps become
type 3 templates; `repository` and `logo` come from callbacks the API layer supplies, since only
it knows the public URLs.

Import (`import_feed`) turns each template into an App with one version, 1.0.0:

- `title`, `description` and `categories` become the app's; `env` becomes the parameters
  (`select` an enum, everything else a string), its `preset` flags and every field the model has
  no place for are kept under the app's `x-portainer` extension, so that exporting an imported
  template gives the same template back;
- a container template (type 1) gets a compose template built from its image, ports, volumes,
  labels, restart policy and env;
- a stack template (2, 3) gets the compose file that `fetch_stackfile(repository)` returns, when
  the caller can fetch it (no network access happens here); else the version has an empty
  template, which the catalog can show but not render.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from . import yamlsafe
from .errors import ModelError
from .interpolate import escape_tree
from .model import App, AppVersion, Parameter, ParamType, is_safe_url, parameter_from_dict

EXTENSION = "x-portainer"
TEMPLATE_TYPES = {1: "container", 2: "swarm stack", 3: "compose stack"}
_MODEL_FIELDS = ("title", "description", "categories", "env")
IMPORTED_VERSION = "1.0.0"

RepositoryFor = Callable[[App, AppVersion], "dict[str, str] | None"]
LogoFor = Callable[[App], "str | None"]
FetchStackfile = Callable[[dict], "str | None"]


# --------------------------------------------------------------------------- export


def _env(version: AppVersion, presets: Iterable[str]) -> list[dict[str, Any]]:
    preset = set(presets)
    out: list[dict[str, Any]] = []
    for param in version.parameters:
        item: dict[str, Any] = {"name": param.name}
        if param.label:
            item["label"] = param.label
        description = param.description
        if param.type is ParamType.SECRET and param.default is None:
            # Portainer cannot generate a value: say so where the user will read it.
            description = (description + " " if description else "") + "(Leave empty for no value; DaoHub's " \
                "renderer generates one.)"
        if description:
            item["description"] = description
        if param.type is ParamType.ENUM:
            item["select"] = [
                {"text": opt.label or opt.value, "value": opt.value, **({"default": True}
                                                                        if opt.value == param.default else {})}
                for opt in param.options]
        elif param.default is not None:
            item["default"] = _text(param.default)
        if param.name in preset:
            item["preset"] = True
        out.append(item)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_template(app: App, version: AppVersion | None = None, *, repository: RepositoryFor | None = None,
                    logo: LogoFor | None = None) -> dict[str, Any]:
    """One Portainer template for `app` (its latest version unless `version` is given)."""
    version = version or app.latest()
    ext = app.extensions.get(EXTENSION) or {}
    template: dict[str, Any] = dict(ext.get("template") or {})
    if not template:
        template = {"type": 3, "name": app.key, "platform": "linux"}
        if app.icon and is_safe_url(app.icon):
            template["logo"] = app.icon
        elif logo is not None and (url := logo(app)):
            template["logo"] = url
        if repository is not None and (repo := repository(app, version)):
            template["repository"] = dict(repo)
    template["title"] = app.title
    if app.description:
        template["description"] = app.description
    if app.categories:
        template["categories"] = list(app.categories)
    if version.parameters:
        template["env"] = _env(version, ext.get("preset") or ())
    return template


def export_feed(apps: Iterable[App], *, version: str = "2", repository: RepositoryFor | None = None,
                logo: LogoFor | None = None) -> dict[str, Any]:
    """A Portainer app-template feed ("2" or "3") of `apps`, in the order given.

    In v3 every template has a unique numeric `id`: the one it was imported with when that is
    still free, otherwise the next free number.
    """
    if version not in ("2", "3"):
        raise ValueError("Portainer template feeds are version 2 or 3")
    templates = [export_template(app, repository=repository, logo=logo) for app in apps if app.versions]
    if version == "2":
        for template in templates:
            template.pop("id", None)
    else:
        used: set[int] = set()
        for template in templates:
            wanted = template.get("id")
            if type(wanted) is int and wanted > 0 and wanted not in used:
                used.add(wanted)
            else:
                template.pop("id", None)
        next_id = 1
        for template in templates:
            if "id" not in template:
                while next_id in used:
                    next_id += 1
                template["id"] = next_id
                used.add(next_id)
    return {"version": version, "templates": templates}


# --------------------------------------------------------------------------- import


def slug(text: str, fallback: str = "app") -> str:
    """An app key from a title or name: lowercase, runs of other characters as one '-'."""
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return key or fallback


def _container_compose(template: dict, name: str, params: list[Parameter]) -> str:
    service: dict[str, Any] = {"image": template.get("image")}
    ports = []
    for port in template.get("ports") or []:
        if isinstance(port, str):  # Portainer writes "8080:80/tcp" or "80/tcp" (any host port)
            ports.append(port)
    if ports:
        service["ports"] = ports
    volumes = []
    for volume in template.get("volumes") or []:
        if isinstance(volume, dict) and isinstance(volume.get("container"), str):
            text = volume["container"]
            if isinstance(volume.get("bind"), str) and volume["bind"]:
                text = f"{volume['bind']}:{text}"
            if volume.get("readonly") and ":" in text:
                text += ":ro"
            volumes.append(text)
    if volumes:
        service["volumes"] = volumes
    labels = {str(lb["name"]): str(lb.get("value", "")) for lb in template.get("labels") or []
              if isinstance(lb, dict) and "name" in lb}
    if labels:
        service["labels"] = labels
    if params:
        service["environment"] = {p.name: f"${{{p.name}}}" for p in params}
    for source, target in (("restart_policy", "restart"), ("command", "command"), ("hostname", "hostname"),
                           ("privileged", "privileged"), ("interactive", "stdin_open")):
        if template.get(source) not in (None, ""):
            service[target] = template[source]
    # A `$` copied from the template is literal: only the env references interpolate.
    service = {k: (v if k == "environment" else escape_tree(v)) for k, v in service.items()}
    return yamlsafe.dump({"services": {name: service}})


def import_template(template: Any, *, path: str = "template", fetch_stackfile: FetchStackfile | None = None,
                    key: str | None = None) -> App:
    """One Portainer template as an App with one version. Raises ModelError with field paths."""
    errors: dict[str, str] = {}
    if not isinstance(template, dict):
        raise ModelError({path: "must be an object"})
    ttype = template.get("type", 1)
    if type(ttype) is not int or ttype not in TEMPLATE_TYPES:  # (a list or object is unhashable)
        errors[f"{path}.type"] = "must be 1 (container), 2 (swarm stack) or 3 (compose stack)"
    for field in ("ports", "volumes", "labels"):
        if template.get(field) is not None and not isinstance(template[field], list):
            errors[f"{path}.{field}"] = "must be a list"
    title = template.get("title")
    if not isinstance(title, str) or not title.strip():
        errors[f"{path}.title"] = "required"
    description = template.get("description", "")
    if not isinstance(description, str):
        errors[f"{path}.description"] = "must be a string"
        description = ""
    categories = template.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        errors[f"{path}.categories"] = "must be a list of strings"
        categories = []
    params: list[Parameter] = []
    presets: list[str] = []
    env = template.get("env") or []
    if not isinstance(env, list):
        errors[f"{path}.env"] = "must be a list"
        env = []
    for i, item in enumerate(env):
        where = f"{path}.env[{i}]"
        if not isinstance(item, dict):
            errors[where] = "must be an object"
            continue
        raw: dict[str, Any] = {"name": item.get("name"), "label": item.get("label") or "",
                               "description": item.get("description") or ""}
        select = item.get("select")
        if select:
            if not isinstance(select, list) or not all(isinstance(o, dict) for o in select):
                errors[f"{where}.select"] = "must be a list of {text, value, default}"
                continue
            raw["type"] = "enum"
            raw["options"] = [{"value": _text(o.get("value", "")), "label": _text(o.get("text", ""))}
                              for o in select]
            chosen = [o for o in select if o.get("default")]
            if chosen:
                raw["default"] = _text(chosen[0].get("value", ""))
        elif item.get("default") is not None:
            raw["default"] = _text(item["default"])
        param = parameter_from_dict(raw, where, errors)
        if param is None:
            continue
        if any(p.name == param.name for p in params):
            errors[f"{where}.name"] = f"duplicate variable {param.name}"
            continue
        params.append(param)
        if item.get("preset"):
            presets.append(param.name)
    if errors:
        raise ModelError(errors)
    extras = {k: v for k, v in template.items() if k not in _MODEL_FIELDS}
    logo = template.get("logo")
    icon = logo if isinstance(logo, str) and is_safe_url(logo) else ""
    if logo is not None and not icon:
        del extras["logo"]  # a javascript: or data: "logo" is not passed on to anyone
    ext: dict[str, Any] = {"template": extras}
    if presets:
        ext["preset"] = presets
    app_key = key or slug(str(template.get("name") or title))
    if ttype == 1:
        text = _container_compose(template, slug(str(template.get("name") or title), "app"), params)
    else:
        repo = template.get("repository")
        text = (fetch_stackfile(repo) if fetch_stackfile is not None and isinstance(repo, dict) else None) or ""
    version = AppVersion(IMPORTED_VERSION, {"compose.yaml": text}, tuple(params))
    return App(key=app_key, title=title.strip(), description=description, icon=icon,
               categories=tuple(dict.fromkeys(c.strip() for c in categories if c.strip())),
               extensions={EXTENSION: ext}, versions=(version,))


def read_feed(doc: Any, *, fetch_stackfile: FetchStackfile | None = None) -> list[tuple[App | None, dict[str, str]]]:
    """Every template of a v2 or v3 feed, each as (App, {}) or (None, its field errors), in feed
    order: one bad template does not hide the others (the import page previews them all). Keys
    are unique within the feed (a repeated name gets -2, -3...). Raises ModelError when the
    document is not a feed at all."""
    if not isinstance(doc, dict):
        raise ModelError("a Portainer template feed is a JSON object")
    errors: dict[str, str] = {}
    if str(doc.get("version")) not in ("2", "3"):
        errors["version"] = "must be \"2\" or \"3\""
    templates = doc.get("templates")
    if not isinstance(templates, list):
        errors["templates"] = "must be a list"
    if errors:
        raise ModelError(errors)
    out: list[tuple[App | None, dict[str, str]]] = []
    taken: set[str] = set()
    for i, template in enumerate(templates):
        try:
            app = import_template(template, path=f"templates[{i}]", fetch_stackfile=fetch_stackfile)
        except ModelError as exc:
            out.append((None, exc.errors))
            continue
        key, n = app.key, 1
        while key in taken:
            n += 1
            key = f"{app.key[:60]}-{n}"
        taken.add(key)
        out.append((replace(app, key=key), {}))
    return out


def import_feed(doc: Any, *, fetch_stackfile: FetchStackfile | None = None) -> list[App]:
    """Every template of a v2 or v3 feed as an App. Raises ModelError listing every bad field of
    every template."""
    apps, errors = [], {}
    for app, problems in read_feed(doc, fetch_stackfile=fetch_stackfile):
        errors.update(problems)
        if app is not None:
            apps.append(app)
    if errors:
        raise ModelError(errors)
    return apps
