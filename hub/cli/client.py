"""`daohub client setup`: configure docker, containerd and podman on this machine to pull through a
DaoHub's pull-through cache, in one line.

The server says what it mirrors (`GET /client-setup`, anonymous, the data of the landing page's
"Use it as a mirror" section); hub/proxy/clientsetup.py makes the files from it, for both. Without
`--write` the files are printed; with it they are merged into place (daemon.json and registries.conf
keep everything else they hold), each changed file first copied to `<file>.bak-<UTC time>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..proxy import clientsetup
from ..proxy.clientsetup import Setup, SetupError

DOCKER_CONFIG = "/etc/docker/daemon.json"
CONTAINERD_DIR = "/etc/containerd/certs.d"
PODMAN_CONFIG = "/etc/containers/registries.conf"
CLIENTS = ("docker", "containerd", "podman")


def add_parsers(sub) -> None:
    client = sub.add_parser("client", help="set up container clients to use this registry").add_subparsers(
        dest="verb", required=True)
    setup = client.add_parser(
        "setup", help="print (or --write) docker, containerd and podman settings to pull through this registry",
        description="Print the docker daemon.json registry-mirrors, the containerd hosts.toml of each mirrored "
                    "registry and the podman registries.conf mirrors for a DaoHub; with --write, merge them into "
                    "this machine's files (each changed file is backed up first as FILE.bak-<UTC time>).")
    which = setup.add_mutually_exclusive_group()
    for name in CLIENTS:
        which.add_argument(f"--{name}", dest="clients", action="append_const", const=name,
                           help=f"{name} only (default: all three)")
    setup.add_argument("--write", action="store_true", help="write the files (as root, usually) instead of printing")
    setup.add_argument("--server", metavar="URL",
                       help="the DaoHub to use, as this machine reaches it (default: server.public_url of the "
                            "config, else http://server.addr)")
    setup.add_argument("--ca-file", help="CA bundle to trust for an https --server")
    setup.add_argument("--docker-config", default=DOCKER_CONFIG, metavar="FILE",
                       help=f"docker's daemon.json (default {DOCKER_CONFIG})")
    setup.add_argument("--containerd-dir", default=CONTAINERD_DIR, metavar="DIR",
                       help=f"containerd's hosts directory, its config_path (default {CONTAINERD_DIR})")
    setup.add_argument("--podman-config", default=PODMAN_CONFIG, metavar="FILE",
                       help=f"registries.conf of podman, buildah and skopeo (default {PODMAN_CONFIG})")
    setup.add_argument("--config", dest="sub_config", help="YAML config file (only read without --server)")
    setup.add_argument("--data-dir", help="data directory (only read without --server)")


def needs_config(args: argparse.Namespace) -> bool:
    return not args.server


def default_server(config) -> str:
    if config.server.public_url:
        return config.server.public_url
    host, port = config.host_port
    if host in ("0.0.0.0", "::", ""):
        raise SetupError(f"server.addr listens on all addresses ({host}): name this server with --server URL")
    return f"{'https' if config.server.tls.enabled else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


def fetch_setup(server: str, ca_file: str | None = None) -> Setup:
    """The server's client set-up, with the address as this machine reaches it (`server`)."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise SetupError(f"--server: {server!r} is not a registry URL such as https://hub.example")
    url = f"{parts.scheme}://{parts.netloc}/client-setup"
    context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=30, context=context) as response:
            data = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        hint = " (a DaoHub older than `client setup`?)" if exc.code == 404 else ""
        raise SetupError(f"{url} answered {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SetupError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None
    setup = Setup.from_dict(data)
    # The server knows its address from public_url or the Host header; this machine's URL wins.
    return Setup(parts.scheme, parts.netloc, setup.mirrors)


@dataclass
class Planned:
    """One file: where, its new text, and the text it has now (None: missing)."""

    client: str
    path: Path
    text: str
    current: str | None


def plan(setup: Setup, clients: tuple[str, ...], args: argparse.Namespace, warn) -> list[Planned]:
    if not setup.mirrors:
        raise SetupError(f"{setup.url} mirrors no upstream registry for anonymous pulls: nothing to set up")
    files: list[Planned] = []
    if "docker" in clients:
        if setup.default is None:
            message = (f"{setup.url} has no default mirror, and docker's registry-mirrors stand in for Docker "
                       "Hub only: docker pulls through its path prefix instead (HOST/<upstream>/<repository>)")
            if clients == ("docker",):
                raise SetupError(message)
            warn(f"docker skipped: {message}")
        else:
            path = Path(args.docker_config)
            current = _read(path)
            text = (clientsetup.merge_daemon_json(current, setup) if current is not None
                    else clientsetup.daemon_json_text(setup))
            files.append(Planned("docker", path, text if args.write else clientsetup.daemon_json_text(setup),
                                 current))
    if "containerd" in clients:
        for namespace, text in clientsetup.containerd_files(setup).items():
            path = Path(args.containerd_dir) / namespace / "hosts.toml"
            files.append(Planned("containerd", path, text, _read(path)))
    if "podman" in clients:
        path = Path(args.podman_config)
        current = _read(path)
        text = clientsetup.registries_conf(setup)
        if args.write and current is not None:
            text = clientsetup.merge_registries_conf(current, setup)
        files.append(Planned("podman", path, text, current))
    return files


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror or exc}") from None


def backup_path(path: Path, now: float | None = None) -> Path:
    """`<path>.bak-YYYYMMDDTHHMMSSZ`, with `-2`, `-3`... if that exists already."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    candidate, n = path.with_name(f"{path.name}.bak-{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
    return candidate


def write_file(path: Path, text: str, current: str | None) -> Path | None:
    """Write `text` to `path` atomically (same mode as before, else 0644); back the old file up
    first. Returns the backup's path (None when there was no file)."""
    backup = None
    if current is not None:
        backup = backup_path(path)
        shutil.copy2(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if current is not None else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return backup


NEXT_STEP = {
    "docker": "restart dockerd, or send it SIGHUP (registry-mirrors and insecure-registries reload live)",
    "containerd": "containerd reads hosts.toml at each pull; the CRI plugin (Kubernetes) needs "
                  f'config_path = "{CONTAINERD_DIR}" in /etc/containerd/config.toml, and ctr --hosts-dir',
    "podman": "podman, buildah and skopeo read registries.conf at each command",
}


def run(args: argparse.Namespace, config=None) -> int:
    def warn(message: str) -> None:
        print(f"daohub: {message}", file=sys.stderr)

    clients = tuple(args.clients or CLIENTS)
    try:
        server = args.server or default_server(config)
        setup = fetch_setup(server, args.ca_file)
        files = plan(setup, clients, args, warn)
    except SetupError as exc:
        warn(str(exc))
        return 1
    if not args.write:
        for f in files:
            if len(files) > 1:
                print(f"# {f.path}")
            sys.stdout.write(f.text)
            if len(files) > 1:
                print()
        return 0
    changed: set[str] = set()
    for f in files:
        if f.current == f.text:
            print(f"{f.client}: {f.path} unchanged (it has these settings already)")
            continue
        try:
            backup = write_file(f.path, f.text, f.current)
        except OSError as exc:
            warn(f"cannot write {f.path}: {exc.strerror or exc}")
            return 1
        changed.add(f.client)
        print(f"{f.client}: wrote {f.path}" + (f" (the previous file is {backup})" if backup else " (new file)"))
    for client in clients:
        if client in changed:
            print(f"{client}: next, {NEXT_STEP[client]}")
    return 0
