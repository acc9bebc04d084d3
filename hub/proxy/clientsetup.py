"""Client set-up for this registry's pull-through cache: the one source of the snippets the landing
page (hub/web/landing.py) shows and `daohub client setup` prints or writes (hub/cli/client.py).

A `Setup` is what a client needs to know: the address clients reach this registry at, and the
upstreams it mirrors for anonymous pulls (daemons pull through a mirror without credentials),
each with the registry host names ("namespaces") clients call it by. From it come:

- docker: `daemon.json`'s `registry-mirrors` (Docker Hub names only: dockerd sends
  `/v2/library/alpine/...`, which this registry serves from its default mirror), plus
  `insecure-registries` over plain HTTP;
- containerd: one `certs.d/<namespace>/hosts.toml` per namespace of every mirrored upstream
  (containerd adds `?ns=<namespace>`, so each reaches its own upstream);
- podman, buildah, skopeo: `registries.conf` `[[registry]]` entries with this registry as the
  first `[[registry.mirror]]`: the default mirror by the bare address (mirror mode), every other
  upstream by its path prefix (`host/<upstream>`), since podman sends no `ns=`.

`merge_daemon_json` and `merge_registries_conf` add these to an existing file and keep everything
else in it (keys, other registries, other mirrors; tomlkit keeps registries.conf's comments).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import tomlkit
import tomlkit.exceptions

from ..registry.names import COMPONENT_RE

# Docker Hub's registry goes by these names; its API lives at registry-1.docker.io.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
_LOOPBACK = re.compile(r"(?:127(?:\.[0-9]{1,3}){3}|localhost|\[::1\])(?::[0-9]+)?")
# A registry address: a DNS name, an IPv4 address or a bracketed IPv6 address, with an optional port.
# Nothing else may become a file name under certs.d/ or a value in the TOML and JSON written.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


class SetupError(ValueError):
    """An existing file cannot be merged into, or the server offers nothing for this client."""


def is_host(name: str) -> bool:
    return len(name) <= 260 and bool(_HOST.fullmatch(name))


def host_like(name: str) -> bool:
    """A registry host as clients tell one from a repository's first component (docker's rule: a
    dot, a port or `localhost`)."""
    return is_host(name) and ("." in name or ":" in name or name == "localhost")


@dataclass(frozen=True)
class Mirror:
    """One upstream anyone may pull through: its name (the path prefix) and the registry hosts clients
    call it by (its name and aliases that look like hosts; containerd sends them as `ns=`)."""

    name: str
    namespaces: tuple[str, ...]
    default: bool = False

    @classmethod
    def of(cls, name: str, aliases: tuple[str, ...] | list[str] = (), default: bool = False) -> Mirror:
        seen: list[str] = []
        for host in (name, *aliases):
            # Clients name Docker Hub `docker.io` whatever it is called here.
            host = "docker.io" if host in DOCKER_HUB_HOSTS else host
            if host_like(host) and host not in seen:
                seen.append(host)
        return cls(name, tuple(seen), default)


@dataclass(frozen=True)
class Setup:
    scheme: str          # http | https
    host: str            # host[:port] clients use
    mirrors: tuple[Mirror, ...] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def plain_http(self) -> bool:
        return self.scheme == "http"

    @property
    def loopback(self) -> bool:
        return bool(_LOOPBACK.fullmatch(self.host))

    @property
    def default(self) -> Mirror | None:
        return next((m for m in self.mirrors if m.default), None)

    def as_dict(self) -> dict:
        """The JSON `GET /client-setup` answers (and `from_dict` reads back)."""
        return {"scheme": self.scheme, "host": self.host,
                "mirrors": [{"name": m.name, "namespaces": list(m.namespaces), "default": m.default}
                            for m in self.mirrors]}

    @classmethod
    def from_dict(cls, data: object) -> Setup:
        try:
            assert isinstance(data, dict)
            scheme, host = data["scheme"], data["host"]
            assert scheme in ("http", "https") and isinstance(host, str) and is_host(host)
            mirrors = []
            for m in data.get("mirrors", []):
                names = tuple(m["namespaces"])
                # The name becomes a path prefix (registries.conf); the namespaces directory names.
                assert isinstance(m["name"], str) and COMPONENT_RE.fullmatch(m["name"])
                assert all(isinstance(n, str) and host_like(n) for n in names)
                mirrors.append(Mirror(m["name"], names, bool(m.get("default"))))
        except (AssertionError, KeyError, TypeError) as exc:
            raise SetupError(f"the server's client set-up is not understood ({type(exc).__name__})") from None
        return cls(scheme, host, tuple(mirrors))


def server_for(namespace: str) -> str:
    """hosts.toml's `server`: where containerd goes when no mirror answers (the registry itself)."""
    return DOCKER_HUB_SERVER if namespace in DOCKER_HUB_HOSTS else f"https://{namespace}"


# --- docker ------------------------------------------------------------------------------------

def daemon_json(setup: Setup) -> dict:
    """The keys of daemon.json this registry needs; empty without a default mirror (docker's
    registry-mirrors serve Docker Hub names only, which this registry answers from that mirror)."""
    if setup.default is None:
        return {}
    keys: dict = {"registry-mirrors": [setup.url]}
    if setup.plain_http:
        keys["insecure-registries"] = [setup.host]
    return keys


def daemon_json_text(setup: Setup) -> str:
    """daemon_json as README writes it: one key a line, lists inline."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in daemon_json(setup).items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def merge_daemon_json(existing: str, setup: Setup) -> str:
    """`existing` daemon.json (may be empty) with this registry first in `registry-mirrors` (and in
    `insecure-registries` over plain HTTP); every other key and list entry kept."""
    try:
        document = json.loads(existing) if existing.strip() else {}
    except ValueError as exc:
        raise SetupError(f"the existing daemon.json is not valid JSON ({exc}): fix or move it first") from None
    if not isinstance(document, dict):
        raise SetupError("the existing daemon.json is not a JSON object: fix or move it first")
    for key, wanted in daemon_json(setup).items():
        current = document.get(key, [])
        if not isinstance(current, list):
            raise SetupError(f"daemon.json's {key!r} is not a list: fix it first")
        document[key] = wanted + [v for v in current if v not in wanted]
    return json.dumps(document, indent=2) + "\n"


# --- containerd --------------------------------------------------------------------------------

def hosts_toml(setup: Setup, namespace: str) -> str:
    """`certs.d/<namespace>/hosts.toml`: pull and resolve through this registry first."""
    return (f'server = "{server_for(namespace)}"\n\n'
            f'[host."{setup.url}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def containerd_files(setup: Setup) -> dict[str, str]:
    """namespace -> its hosts.toml, for every namespace of every mirror."""
    return {ns: hosts_toml(setup, ns) for m in setup.mirrors for ns in m.namespaces}


# --- podman, buildah, skopeo -------------------------------------------------------------------

def mirror_location(setup: Setup, mirror: Mirror) -> str:
    """The default mirror by the bare address (mirror mode), any other by its path prefix."""
    return setup.host if mirror.default else f"{setup.host}/{mirror.name}"


def _registries(setup: Setup) -> list[tuple[str, str]]:
    """(registry location, mirror location) for every namespace of every mirror."""
    return [(ns, mirror_location(setup, m)) for m in setup.mirrors for ns in m.namespaces]


def registries_conf(setup: Setup) -> str:
    """registries.conf entries (TOML, version 2 format)."""
    out = []
    for location, mirror in _registries(setup):
        out.append(f'[[registry]]\nlocation = "{location}"\n\n[[registry.mirror]]\nlocation = "{mirror}"\n'
                   + ("insecure = true\n" if setup.plain_http else ""))
    return "\n".join(out)


def merge_registries_conf(existing: str, setup: Setup) -> str:
    """`existing` registries.conf with this registry as the first mirror of each namespace's
    `[[registry]]` (added if missing); other registries, mirrors, keys and comments kept."""
    try:
        document = tomlkit.parse(existing)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise SetupError(f"the existing registries.conf is not valid TOML ({exc}): fix or move it first") from None
    if "registries" in document and "registry" not in document:
        # The version 1 format ([registries.search] ...) cannot be mixed with [[registry]] tables.
        raise SetupError("the existing registries.conf uses the version 1 format ([registries.*]): "
                         "convert it to [[registry]] tables first")
    registries = document.get("registry")
    if registries is None:
        registries = tomlkit.aot()
        document.append("registry", registries)
    elif not isinstance(registries, list):
        raise SetupError("registries.conf's `registry` is not an array of tables ([[registry]])")
    for location, mirror_at in _registries(setup):
        entry = next((r for r in registries if r.get("location", r.get("prefix")) == location), None)
        if entry is None:
            entry = tomlkit.table()
            entry["location"] = location
            registries.append(entry)
            entry = registries[-1]
        mirrors = [m for m in entry.get("mirror", []) if m.get("location") != mirror_at]
        ours = tomlkit.table()
        ours["location"] = mirror_at
        if setup.plain_http:
            ours["insecure"] = True
        table = tomlkit.aot()
        for m in [ours, *mirrors]:
            table.append(m)
        entry["mirror"] = table
    return _spaced(tomlkit.dumps(document))


def _spaced(text: str) -> str:
    """A blank line before each [[registry]] or [[registry.mirror]] that follows a key line directly
    (tomlkit appends tables without one); comments stay next to the table they describe."""
    out: list[str] = []
    for line in text.rstrip("\n").split("\n"):
        if line in ("[[registry]]", "[[registry.mirror]]") and out and out[-1].strip() \
                and not out[-1].lstrip().startswith("#"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"
