"""Render an app version: check the submitted values, generate secrets, interpolate, validate.

`render(version, values)` is the whole pipeline and returns a `RenderResult`: the compose YAML
text, ready for `docker compose up`, and the images it uses. Every user mistake is an
`AppStoreError` subclass with field-level `errors` (`ValuesError` keyed by parameter name,
`ComposeError`/`InterpolationError` keyed by the path in the document), never another exception.

`check_template(version)` is the publish-time check of a version's own templates.

Whether each image exists in DaoHub and whether the caller may pull it is the API layer's
business (it knows the registry and the caller): it passes an `ImageChecker` to `check_images`.

How parameter names meet the template (the collision rule)
-----------------------------------------------------------
1. A parameter reaches the template only through `$NAME` / `${NAME...}` in a *value*. Keys are
   never interpolated, so a parameter may be named like a compose key (`image`, `ports`,
   `services`, `environment`) or like a container's variable: it changes only the values that
   reference it.
2. Interpolation sees the declared parameters and nothing else: never the environment of the
   server or of the CLI. A reference to anything else is an error (`check_template` at publish,
   `render` too), so `${HOME}` meant for the container's shell is written `$${HOME}`.
3. The output is fully resolved: every `$` left in it (from `$$` in the template, or inside a
   value such as a generated password) is written back as `$$`. When the user later runs
   `docker compose up`, neither Compose's own interpolation nor a variable of the same name in the
   user's shell or `.env` file can change the rendered values.
4. Names starting with COMPOSE_ or DOCKER_ are refused (appstore.model): they steer docker
   compose itself when exported. Names that differ only in case are refused, because an importer
   or exporter may pass parameters through case-insensitive environments (Windows, forms).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import interpolate as interp
from . import yamlsafe
from .errors import ComposeError, InterpolationError, ValuesError, YamlError
from .model import AppVersion, Parameter, ParamType, coerce_value

TOP_LEVEL_KEYS = ("name", "version", "services", "networks", "volumes", "configs", "secrets", "include", "models")
PROJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SERVICE_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
RESOURCE_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_OUTPUT_BYTES = 4 << 20


# --------------------------------------------------------------------------- values


def generate_secret(param: Parameter) -> str:
    """A fresh secret: `param.length` characters drawn uniformly from `param.alphabet`."""
    return "".join(secrets.choice(param.alphabet) for _ in range(param.length))


def resolve_values(version: AppVersion, values: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Check `values` against the version's parameters and fill in defaults and secrets.

    Returns (typed values by parameter name, names of the secrets generated now). A value that
    is None or "" counts as not given: the default applies, a secret is generated, and a
    required parameter without a default is an error. Raises ValuesError mapping each bad
    parameter (or unknown name) to a message.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValuesError("the values must be an object mapping parameter names to values")
    values = dict(values)
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    generated: list[str] = []
    known = {p.name for p in version.parameters}
    for name in values:
        if name not in known:
            errors[str(name)] = "unknown parameter"
    for param in version.parameters:
        raw = values.get(param.name)
        if raw is None or raw == "":
            if param.default is not None:
                out[param.name] = param.default
            elif param.type is ParamType.SECRET:
                out[param.name] = generate_secret(param)
                generated.append(param.name)
            elif param.required:
                errors[param.name] = "required"
            continue
        value, problem = coerce_value(param, raw)
        if problem:
            errors[param.name] = problem
        else:
            out[param.name] = value
    if errors:
        raise ValuesError(errors)
    return out, generated


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- images


_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,}))?$"
)
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImageRef:
    """An image reference, normalized the way Docker does: `nginx` is docker.io/library/nginx:latest."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    services: tuple[str, ...] = ()

    @property
    def normalized(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return self.normalized


def parse_image(reference: str) -> ImageRef:
    """Parse and normalize an image reference. Raises ValueError with the reason."""
    if not isinstance(reference, str) or not reference or len(reference) > 512:
        raise ValueError("an image reference is a non-empty string of at most 512 characters")
    match = _REFERENCE_RE.match(reference)
    if match is None:
        raise ValueError(f"{reference!r} is not a valid image reference")
    domain, path, tag, digest = match.group("domain", "path", "tag", "digest")
    if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain.startswith("[")):
        path = f"{domain}/{path}"  # `user/app`: the first part is a Docker Hub namespace
        domain = None
        if not _PATH_RE.match(path):
            raise ValueError(f"{reference!r} is not a valid image reference (repository names are lowercase)")
    if domain and domain != domain.lower() and not domain.startswith("["):
        domain = domain.lower()
    registry = domain or DEFAULT_REGISTRY
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, path, tag, digest.lower() if digest else None)


@dataclass(frozen=True)
class ImageStatus:
    """What the API layer found out about one image: None where it could not tell."""

    exists: bool | None
    pullable: bool | None
    detail: str = ""


ImageChecker = Callable[[ImageRef], Awaitable[ImageStatus]]
"""The hook the API layer supplies: given an image, does it exist in DaoHub and may the caller pull
it? Called once per distinct normalized reference."""


async def check_images(images: Iterable[ImageRef], checker: ImageChecker) -> list[tuple[ImageRef, ImageStatus]]:
    """Run `checker` over each image once, in order."""
    return [(image, await checker(image)) for image in images]


# --------------------------------------------------------------------------- compose checks


def _port_number(text: str) -> int | None:
    if not re.fullmatch(r"[0-9]{1,5}", text):
        return None
    number = int(text)
    return number if 0 < number <= 65535 else None


def _port_range(text: str) -> tuple[int, int] | None:
    low_text, dash, high_text = text.partition("-")
    low = _port_number(low_text)
    high = _port_number(high_text) if dash else low
    if low is None or high is None or high < low:
        return None
    return low, high


def check_port(entry: Any) -> str | None:
    """Why a `ports:` entry is invalid, or None. Short `[[IP:]HOST:]CONTAINER[/PROTO]` or long form."""
    if isinstance(entry, bool):
        return "must be a port, a port string or a mapping"
    if isinstance(entry, int):
        return None if 0 < entry <= 65535 else "port must be in 1..65535"
    if isinstance(entry, dict):
        return _check_long_port(entry)
    if not isinstance(entry, str):
        return "must be a port, a port string or a mapping"
    text, slash, protocol = entry.partition("/")
    if slash and protocol not in ("tcp", "udp", "sctp"):
        return f"unknown protocol {protocol!r} (tcp, udp or sctp)"
    ip = None
    if text.startswith("["):  # [IPv6]:host:container
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            return "an IPv6 address is written [addr]:host:container"
        ip, text = text[1:close], text[close + 2:]
    parts = text.split(":")
    if ip is None and len(parts) == 3:
        ip = parts.pop(0)
    elif ip is not None and len(parts) != 2:
        return "an address must be followed by host:container"
    if len(parts) > 2 or not parts[-1]:
        return "expected [[ip:]host:]container[/protocol]"
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return f"{ip!r} is not an IP address"
    container = _port_range(parts[-1])
    if container is None:
        return f"container port {parts[-1]!r} is not a port or a range in 1..65535"
    if len(parts) == 2 and parts[0]:  # empty host part (ip::container) means "any free port"
        host = _port_range(parts[0])
        if host is None:
            return f"host port {parts[0]!r} is not a port or a range in 1..65535"
        host_count, container_count = host[1] - host[0], container[1] - container[0]
        if container_count and host_count != container_count:
            return "host and container port ranges must be the same length"
    return None


def _check_long_port(entry: dict) -> str | None:
    target = entry.get("target")
    if isinstance(target, str) and _port_number(target):
        target = int(target)
    if type(target) is not int or not 0 < target <= 65535:
        return "target must be a port in 1..65535"
    published = entry.get("published")
    if published is not None and not isinstance(published, bool):
        if _port_range(str(published)) is None:
            return "published must be a port or a range in 1..65535"
    elif isinstance(published, bool):
        return "published must be a port or a range in 1..65535"
    if entry.get("protocol", "tcp") not in ("tcp", "udp", "sctp"):
        return "protocol must be tcp, udp or sctp"
    if entry.get("mode", "ingress") not in ("host", "ingress"):
        return "mode must be host or ingress"
    host_ip = entry.get("host_ip")
    if host_ip is not None:
        try:
            ipaddress.ip_address(str(host_ip))
        except ValueError:
            return f"host_ip {host_ip!r} is not an IP address"
    unknown = set(entry) - {"target", "published", "host_ip", "protocol", "app_protocol", "mode", "name"}
    unknown = {k for k in unknown if not str(k).startswith("x-")}
    if unknown:
        return f"unknown port field(s): {', '.join(sorted(map(str, unknown)))}"
    return None


_VOLUME_MODES = {"ro", "rw", "z", "Z", "cached", "delegated", "consistent", "nocopy", "rprivate", "private",
                 "rshared", "shared", "rslave", "slave"}
_VOLUME_TYPES = {"volume", "bind", "tmpfs", "npipe", "cluster", "image"}


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~", "$"))


def check_volume(entry: Any) -> tuple[str | None, str | None]:
    """(problem or None, named volume it uses or None) for a service's `volumes:` entry."""
    if isinstance(entry, dict):
        unknown = set(entry) - {"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "image",
                                "consistency"}
        unknown = {k for k in unknown if not str(k).startswith("x-")}
        if unknown:
            return f"unknown volume field(s): {', '.join(sorted(map(str, unknown)))}", None
        vtype = entry.get("type", "volume")
        if vtype not in _VOLUME_TYPES:
            return f"type must be one of {', '.join(sorted(_VOLUME_TYPES))}", None
        target = entry.get("target")
        if not isinstance(target, str) or not target.startswith("/"):
            return "target must be an absolute path in the container", None
        source = entry.get("source")
        if source is not None and not isinstance(source, str):
            return "source must be a string", None
        if vtype == "bind" and not source:
            return "a bind mount needs a source path", None
        if vtype == "volume" and source and not _is_path(source):
            return None, source
        return None, None
    if not isinstance(entry, str) or not entry:
        return "must be a string `[source:]target[:mode]` or a mapping", None
    parts = entry.split(":")
    if len(parts) > 3:
        return "expected [source:]target[:mode]", None
    if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/")):
        modes = parts.pop().split(",")
        bad = [m for m in modes if m not in _VOLUME_MODES]
        if bad:
            return f"unknown volume mode(s) {', '.join(bad)}", None
    target = parts[-1]
    if not target.startswith("/"):
        return f"target {target!r} must be an absolute path in the container", None
    if len(parts) == 2:
        source = parts[0]
        if not source:
            return "empty source", None
        if not _is_path(source):
            if not RESOURCE_NAME_RE.match(source):
                return f"{source!r} is neither a path nor a volume name", None
            return None, source
    return None, None


def _names(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):  # short form (names) or long form (mappings with a source)
        return [str(v.get("source")) if isinstance(v, dict) else str(v) for v in value]
    return []


def validate_compose(doc: Any) -> list[tuple[str, ImageRef]]:
    """Check a rendered (fully interpolated) compose document; return (service, image) pairs.

    Raises ComposeError mapping paths to problems.
    """
    errors: dict[str, str] = {}
    if not isinstance(doc, dict):
        raise ComposeError("a compose file must be a mapping at the top level")
    for key in doc:
        if not isinstance(key, str) or (key not in TOP_LEVEL_KEYS and not key.startswith("x-")):
            errors[str(key)] = (f"unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)}, and extensions "
                                f"starting with x-)")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not PROJECT_NAME_RE.match(name)):
        errors["name"] = "a project name is lowercase letters, digits, '_' and '-', starting with a letter or digit"
    declared: dict[str, set[str]] = {}
    for section in ("networks", "volumes", "configs", "secrets"):
        value = doc.get(section)
        if value is None:
            declared[section] = set()
            continue
        if not isinstance(value, dict):
            errors[section] = "must be a mapping"
            declared[section] = set()
            continue
        for res_name, spec in value.items():
            if not isinstance(res_name, str) or not RESOURCE_NAME_RE.match(res_name):
                errors[f"{section}.{res_name}"] = "invalid name"
            elif spec is not None and not isinstance(spec, dict):
                errors[f"{section}.{res_name}"] = "must be a mapping or empty"
        declared[section] = {str(k) for k in value}
    services = doc.get("services")
    images: list[tuple[str, ImageRef]] = []
    if services is None:
        if "include" not in doc:
            errors["services"] = "required: a compose file needs at least one service"
    elif not isinstance(services, dict) or not services:
        errors["services"] = "must be a mapping of at least one service"
    else:
        for svc_name, svc in services.items():
            where = f"services.{svc_name}"
            if not isinstance(svc_name, str) or not SERVICE_NAME_RE.match(svc_name):
                errors[where] = "invalid service name (letters, digits, '.', '_' and '-')"
                continue
            if not isinstance(svc, dict):
                errors[where] = "must be a mapping"
                continue
            images.extend((svc_name, ref) for ref in _check_service(svc, where, declared, errors))
            for i, dependency in enumerate(_names(svc.get("depends_on"))):
                if dependency not in services:
                    errors[f"{where}.depends_on[{i}]"] = f"depends on undefined service {dependency!r}"
    if errors:
        raise ComposeError(errors)
    return images


def _check_service(svc: dict, where: str, declared: dict[str, set[str]], errors: dict[str, str]) -> list[ImageRef]:
    refs: list[ImageRef] = []
    image = svc.get("image")
    if image is None and "build" not in svc and "extends" not in svc:
        errors[where] = "needs an image or a build section"
    if image is not None:
        try:
            refs.append(parse_image(image))
        except ValueError as exc:
            errors[f"{where}.image"] = str(exc)
    for key in ("ports", "expose", "volumes", "networks", "depends_on", "labels", "environment"):
        value = svc.get(key)
        if value is not None and not isinstance(value, (list, dict)):
            errors[f"{where}.{key}"] = "must be a list or a mapping"
    ports = svc.get("ports")
    if isinstance(ports, list):
        for i, entry in enumerate(ports):
            problem = check_port(entry)
            if problem:
                errors[f"{where}.ports[{i}]"] = problem
    elif isinstance(ports, dict):
        errors[f"{where}.ports"] = "must be a list"
    volumes = svc.get("volumes")
    if isinstance(volumes, list):
        for i, entry in enumerate(volumes):
            problem, named = check_volume(entry)
            if problem:
                errors[f"{where}.volumes[{i}]"] = problem
            elif named and named not in declared["volumes"]:
                errors[f"{where}.volumes[{i}]"] = f"named volume {named!r} is not declared under top-level volumes"
    elif isinstance(volumes, dict):
        errors[f"{where}.volumes"] = "must be a list"
    for section in ("networks", "configs", "secrets"):
        for i, ref in enumerate(_names(svc.get(section))):
            if section == "networks" and ref == "default":
                continue
            if ref not in declared[section]:
                errors[f"{where}.{section}[{i}]"] = f"{ref!r} is not declared under top-level {section}"
    return refs


# --------------------------------------------------------------------------- templates


def _parse_template(name: str, text: str) -> dict:
    try:
        doc = yamlsafe.load(text)
    except YamlError as exc:
        raise ComposeError({name: exc.summary()}) from None
    if not isinstance(doc, dict):
        raise ComposeError({name: "a compose file must be a mapping at the top level"})
    return doc


def _undeclared(version: AppVersion, file: str, doc: dict) -> dict[str, str]:
    declared = {p.name for p in version.parameters}
    errors: dict[str, str] = {}
    try:
        used = interp.variables(doc)
    except InterpolationError as exc:
        return {f"{file}:{path}": msg for path, msg in exc.errors.items()}
    for name in used:
        if name not in declared:
            errors[f"{file}:${{{name}}}"] = (f"references ${{{name}}}, which is not a parameter: declare it, or write "
                                         f"$${name} for a literal '$' (e.g. a variable of the container's shell)")
    return errors


def merge(base: Any, override: Any) -> Any:
    """Merge a later compose file over an earlier one: mappings merge key by key, lists are
    appended (duplicates dropped), anything else is replaced. A subset of Compose's merge rules,
    enough for override files that add ports, volumes, labels or environment."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


@dataclass(frozen=True)
class RenderResult:
    """A rendered version. `text`, `document` and `values` hold the passwords and generated
    secrets: show them once, never log them (they are left out of the repr)."""

    text: str = field(repr=False)
    document: dict = field(repr=False)
    images: tuple[ImageRef, ...]
    values: dict[str, Any] = field(repr=False)
    generated: tuple[str, ...] = ()


def render(version: AppVersion, values: Mapping[str, Any] | None = None, *,
           project_name: str | None = None) -> RenderResult:
    """Render `version` with `values` (parameter name -> value, typed or as text).

    Raises ValuesError (keyed by parameter), InterpolationError or ComposeError (keyed by
    path, prefixed with the compose file's name when the version has several).
    """
    resolved, generated = resolve_values(version, values)
    mapping = {name: _as_text(value) for name, value in resolved.items()}
    merged: Any = None
    several = len(version.compose_files) > 1
    for file, text in version.compose_files.items():
        doc = _parse_template(file, text)
        errors = _undeclared(version, file, doc)
        if errors:
            raise ComposeError(errors)
        try:
            rendered = interp.interpolate_tree(doc, mapping)
        except InterpolationError as exc:
            raise InterpolationError({f"{file}:{p}" if several else p: m for p, m in exc.errors.items()}) from None
        merged = rendered if merged is None else merge(merged, rendered)
    if merged is None:
        raise ComposeError("the version has no compose template")
    if project_name is not None:
        merged = {"name": project_name, **{k: v for k, v in merged.items() if k != "name"}}
    pairs = validate_compose(merged)
    by_ref: dict[str, ImageRef] = {}
    for service, ref in pairs:
        known = by_ref.get(ref.normalized)
        by_ref[ref.normalized] = ImageRef(ref.registry, ref.repository, ref.tag, ref.digest,
                                          (*(known.services if known else ()), service))
    output = yamlsafe.dump(interp.escape_tree(merged))
    if len(output.encode()) > MAX_OUTPUT_BYTES:
        raise ComposeError(f"the rendered compose file is larger than {MAX_OUTPUT_BYTES} bytes")
    return RenderResult(text=output, document=merged, images=tuple(by_ref.values()), values=resolved,
                        generated=tuple(generated))


def _sample(param: Parameter) -> Any:
    """A value that satisfies `param` when it has no default, for publish-time trial renders."""
    if param.type is ParamType.ENUM:
        return param.options[0].value
    if param.type is ParamType.BOOL:
        return False
    if param.type in (ParamType.INT, ParamType.PORT):
        low, high = param.bounds
        return low if low is not None else (high if high is not None and high < 1 else 1)
    return "sample"


def check_template(version: AppVersion) -> None:
    """Publish-time check of a version's templates. Raises an AppStoreError with every problem.

    Each compose file must be bounded YAML, reference only declared parameters, and render to a
    valid compose document with the defaults (required parameters without a default get a
    sample value; the trial render is skipped when a pattern refuses the sample).
    """
    errors: dict[str, str] = {}
    for file, text in version.compose_files.items():
        try:
            errors.update(_undeclared(version, file, _parse_template(file, text)))
        except ComposeError as exc:
            errors.update(exc.errors)
    if errors:
        raise ComposeError(errors)
    samples: dict[str, Any] = {}
    for param in version.parameters:
        if param.default is None and param.required and param.type is not ParamType.SECRET:
            sample = _sample(param)
            if coerce_value(param, sample)[1] is not None:
                return
            samples[param.name] = sample
    try:
        render(version, samples)
    except ValuesError as exc:  # a default that fails its own rule: the model refuses those already
        raise ComposeError({f"parameters.{k}": v for k, v in exc.errors.items()}) from None


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`["A=1", "B=x=y"]` -> {"A": "1", "B": "x=y"} (the CLI's --set). Raises ValuesError."""
    out: dict[str, str] = {}
    errors: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            errors[item] = "expected NAME=VALUE"
        else:
            out[name] = value
    if errors:
        raise ValuesError(errors)
    return out


def _compose_defaults(version: AppVersion) -> dict[str, str | None]:
    """Parameter -> the default Compose gets, or None where the variable must come from the
    environment: a required parameter or a secret without default (only DaoHub's renderer generates
    one), or a default no Compose expression can carry (`interpolate.compose_can_carry`)."""
    defaults: dict[str, str | None] = {}
    for param in version.parameters:
        if param.default is not None:
            text = _as_text(param.default)
            defaults[param.name] = text if interp.compose_can_carry(text) else None
        elif param.required or param.type is ParamType.SECRET:
            defaults[param.name] = None
    return defaults


def with_compose_defaults(version: AppVersion) -> AppVersion:
    """`version` with its parameters' defaults written into its compose templates, so that
    `docker compose -f oci://...` alone runs the published app with its defaults (see
    `interpolate.with_defaults`); what it cannot default is written as required, so Compose names
    it instead of running with an empty value. A file is rewritten in place, comments and layout
    kept, unless a default cannot be written into YAML source as it stands."""
    defaults = _compose_defaults(version)
    if not defaults:
        return version
    awkward = {name for name, default in defaults.items() if not interp.inline_default(default)}
    files = {}
    for file, text in version.compose_files.items():
        if awkward & set(interp.variables(_parse_template(file, text))):
            # A default that YAML source cannot hold as it stands (a quote, `: `, `#`...): this
            # file is written again from its parsed form, without its comments.
            files[file] = yamlsafe.dump(interp.default_tree(_parse_template(file, text), defaults))
        else:
            files[file] = interp.with_defaults(text, defaults)
    return replace(version, compose_files=files)


def without_compose_defaults(version: AppVersion) -> AppVersion:
    """`version` as its author wrote it, before `with_compose_defaults`: the start of its next
    version, which gets the defaults of its own parameters written when it is published."""
    defaults = _compose_defaults(version)
    if not defaults:
        return version
    files = {}
    for file, text in version.compose_files.items():
        plain = interp.without_defaults(text, defaults)
        tree = interp.map_strings(_parse_template(file, text), lambda value: interp.without_defaults(value, defaults))
        # A file written from its parsed form may hold a default quoted or folded by YAML.
        files[file] = plain if _parse_template(file, plain) == tree else yamlsafe.dump(tree)
    return replace(version, compose_files=files)


def required_variables(version: AppVersion) -> list[str]:
    """Names that `docker compose -f oci://...` needs from the environment (those
    `with_compose_defaults` writes as required), in the parameters' order."""
    return [name for name, default in _compose_defaults(version).items() if default is None]


def compose_environment(version: AppVersion) -> list[str]:
    """What `docker compose -f oci://...` of `version` as stored needs from the environment. A version
    published before DaoHub wrote defaults into templates needs every parameter it references."""
    if with_compose_defaults(version).compose_files == version.compose_files:
        return required_variables(version)
    referenced: set[str] = set()
    for file, text in version.compose_files.items():
        referenced.update(interp.variables(_parse_template(file, text)))
    return [p.name for p in version.parameters if p.name in referenced]
